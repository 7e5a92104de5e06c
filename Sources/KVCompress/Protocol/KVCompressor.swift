/// Binds a ``KVCachePolicy`` and its per-sequence state to one sequence's ``KVCache``: the object a
/// host (the bundled Llama runtime or any other) calls after each layer's attention.
///
/// ```swift
/// let cache = try KVCache(layers: L, kvHeads: Hk, headDim: d, elementType: .f16)
/// let compressor = try KVCompressor(policy: SnapKV(compressionRatio: 0.5), cache: cache, shape: shape)
/// // prefill chunk, for each layer l:
/// try cache.append(layer: l, keys: k, values: v, positions: pos, count: n)
/// // H2O and ObservedAttention read attention column sums: let the attention produce them
/// // (a few percent of its time) rather than have the policy probe the attention again.
/// var sums: [[Float]]? = nil
/// if compressor.needsAttentionColumnSums {
///     let rows = (0..<cache.kvHeads).map { cache.count(layer: l, head: $0) }
///     let stride = rows.max() ?? 0
///     var flat = [Float](repeating: 0, count: cache.kvHeads * stride)
///     cache.attendPrefill(layer: l, queries: q, queryCount: n, queryTokenStride: H * d,
///                         queryPositions: pos, heads: H, output: out,
///                         columnSums: &flat, columnSumStride: stride)
///     sums = rows.indices.map { m in Array(flat[(m * stride)..<(m * stride + rows[m])]) }
/// } else {
///     cache.attendPrefill(layer: l, queries: q, queryCount: n, queryTokenStride: H * d,
///                         queryPositions: pos, heads: H, output: out)
/// }
/// try compressor.afterPrefill(layer: l, queries: q, preRoPEQueries: qPre, queryTokenStride: H * d,
///                             positions: pos, count: n, totalLength: start + n,
///                             isFirstChunk: start == 0, isLastChunk: start + n == promptLength,
///                             attentionColumnSums: sums)
/// // after the last chunk went through every layer:
/// try compressor.finishPrefill()
/// // each decode step, for each layer l: append 1 token, cache.attend(...), then
/// try compressor.afterDecode(layer: l, query: q, preRoPEQuery: qPre, position: p)
/// ```
///
/// Not thread-safe; one compressor per sequence.
public final class KVCompressor {
    /// The cache this compressor manages.
    public let cache: KVCache
    /// The model shape the policy sees.
    public let shape: KVModelShape
    /// Whether the policy reads attention column sums (``KVCachePolicy/needsAttentionColumnSums``):
    /// a host should then pass the column sums of its prefill attention to
    /// ``afterPrefill(layer:queries:preRoPEQueries:queryTokenStride:positions:count:totalLength:isFirstChunk:isLastChunk:pool:attentionColumnSums:)``
    /// and those of its decode attention to
    /// ``afterDecode(layer:query:preRoPEQuery:position:pool:attentionColumnSums:)``.
    public let needsAttentionColumnSums: Bool
    private var runner: any KVPolicyRunner

    /// Creates a compressor with fresh policy state.
    /// - Throws: `KVError.shapeMismatch` when the cache's layers, KV heads or head dimension differ
    ///   from `shape`.
    public init<P: KVCachePolicy>(policy: P, cache: KVCache, shape: KVModelShape) throws(KVError) {
        guard cache.layers == shape.layers, cache.kvHeads == shape.kvHeads, cache.headDim == shape.headDim else {
            throw .shapeMismatch("cache is \(cache.layers) layers x \(cache.kvHeads) KV heads x \(cache.headDim) dims, "
                + "model shape is \(shape.layers) x \(shape.kvHeads) x \(shape.headDim)")
        }
        self.cache = cache
        self.shape = shape
        needsAttentionColumnSums = policy.needsAttentionColumnSums
        runner = KVPolicyBox(policy: policy, state: policy.makeState(shape: shape))
    }

    /// The active policy.
    public var policy: any KVCachePolicy { runner.anyPolicy }

    /// Starts a new sequence: fresh policy state (the cache is not touched; call
    /// ``KVCache/removeAll()`` too when reusing it).
    public func reset() { runner.reset(shape: shape) }

    /// Runs the policy's prefill hook for one layer after its attention over a chunk.
    ///
    /// - Parameters:
    ///   - layer: the layer whose attention just ran.
    ///   - queries: post-RoPE f32 queries of the chunk, token `t` head `h` at
    ///     `queries + t * queryTokenStride + h * headDim`.
    ///   - preRoPEQueries: the same queries before RoPE (needed by ExpectedAttention), or nil.
    ///   - queryTokenStride: floats between consecutive tokens of `queries` (>= heads x headDim).
    ///   - positions: the chunk's positions.
    ///   - count: tokens in the chunk.
    ///   - totalLength: tokens processed so far, the chunk included.
    ///   - isFirstChunk: the chunk starts the sequence.
    ///   - isLastChunk: the chunk ends the prompt (prefill policies compress here).
    ///   - pool: thread pool for attention probes (nil: the calling thread).
    ///   - attentionColumnSums: the chunk's attention column sums per KV head and cache row (see
    ///     ``KVLayerContext/attentionColumnSums``), or nil (policies that need them probe the
    ///     attention instead).
    public func afterPrefill(layer: Int, queries: UnsafePointer<Float>, preRoPEQueries: UnsafePointer<Float>?,
                             queryTokenStride: Int, positions: UnsafePointer<Int32>, count: Int, totalLength: Int,
                             isFirstChunk: Bool, isLastChunk: Bool, pool: ThreadPool? = nil,
                             attentionColumnSums: [[Float]]? = nil) throws(KVError) {
        let context = KVLayerContext(layer: layer, shape: shape, phase: .prefill, queries: queries,
                                     preRoPEQueries: preRoPEQueries, queryTokenStride: queryTokenStride,
                                     positions: positions, tokenCount: count, totalLength: totalLength,
                                     isFirstChunk: isFirstChunk, isLastChunk: isLastChunk, cache: cache, pool: pool,
                                     attentionColumnSums: attentionColumnSums)
        try runner.prefill(context)
    }

    /// Runs the policy's once-per-prompt hook after the last prompt chunk went through every layer
    /// (cross-layer allocators decide here; per-layer policies already compressed each layer).
    public func finishPrefill(pool: ThreadPool? = nil) throws(KVError) {
        try runner.afterPrompt(cache: cache, shape: shape, pool: pool)
    }

    /// Runs the policy's decode hook for one layer after its attention for one token.
    /// - Parameters:
    ///   - layer: the layer whose attention just ran.
    ///   - query: post-RoPE f32 query `[heads][headDim]`.
    ///   - preRoPEQuery: the query before RoPE, or nil.
    ///   - position: the token's position; the sequence length is taken as `position + 1`.
    ///   - pool: thread pool for attention probes (nil: the calling thread).
    ///   - attentionColumnSums: this step's attention probabilities per KV head and cache row, summed
    ///     over the group's query heads (`Attention.decode`'s column sums; see
    ///     ``KVLayerContext/attentionColumnSums``), or nil (policies that need them probe).
    public func afterDecode(layer: Int, query: UnsafePointer<Float>, preRoPEQuery: UnsafePointer<Float>?,
                            position: Int32, pool: ThreadPool? = nil,
                            attentionColumnSums: [[Float]]? = nil) throws(KVError) {
        var p = position
        try withUnsafePointer(to: &p) { (pp: UnsafePointer<Int32>) throws(KVError) in
            let context = KVLayerContext(layer: layer, shape: shape, phase: .decode, queries: query,
                                         preRoPEQueries: preRoPEQuery, queryTokenStride: shape.heads * shape.headDim,
                                         positions: pp, tokenCount: 1, totalLength: Int(position) + 1,
                                         isFirstChunk: false, isLastChunk: false, cache: cache, pool: pool,
                                         attentionColumnSums: attentionColumnSums)
            try runner.decode(context)
        }
    }

    /// Runs the policy's hook with a context the caller built (tests, custom hosts).
    public func run(_ context: KVLayerContext) throws(KVError) {
        precondition(context.cache === cache, "context for another cache")
        switch context.phase {
        case .prefill: try runner.prefill(context)
        case .decode: try runner.decode(context)
        }
    }
}

/// Type-erased policy + state pair.
protocol KVPolicyRunner: AnyObject {
    var anyPolicy: any KVCachePolicy { get }
    func reset(shape: KVModelShape)
    func prefill(_ context: KVLayerContext) throws(KVError)
    func decode(_ context: KVLayerContext) throws(KVError)
    func afterPrompt(cache: KVCache, shape: KVModelShape, pool: ThreadPool?) throws(KVError)
}

final class KVPolicyBox<P: KVCachePolicy>: KVPolicyRunner {
    let policy: P
    var state: P.State

    init(policy: P, state: P.State) {
        self.policy = policy
        self.state = state
    }

    var anyPolicy: any KVCachePolicy { policy }
    func reset(shape: KVModelShape) { state = policy.makeState(shape: shape) }
    func prefill(_ context: KVLayerContext) throws(KVError) { try policy.afterPrefill(context, state: &state) }
    func decode(_ context: KVLayerContext) throws(KVError) { try policy.afterDecode(context, state: &state) }
    func afterPrompt(cache: KVCache, shape: KVModelShape, pool: ThreadPool?) throws(KVError) {
        try policy.afterPrompt(cache: cache, shape: shape, state: &state, pool: pool)
    }
}
