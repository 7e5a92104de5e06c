/// Drives one sequence's ``KVCache`` with a ``KVCachePolicy``: the object an inference runtime calls
/// in each forward pass. It assigns positions (the cache owns them), appends the new keys and
/// values, runs attention over the ragged cache (with the attention column sums the policy needs),
/// and runs the policy's hooks.
///
/// Per forward pass (a prompt chunk or one generated token), two calls:
///
/// ```swift
/// let shape = try KVModelShape(layers: 30, heads: 9, kvHeads: 3, headDim: 64,
///                              rope: try RoPE(headDim: 64, base: 10_000, pairing: .neox),
///                              contextLength: 8192)
/// let compressor = try KVCompressor(policy: try SnapKV(compressionRatio: 0.5), shape: shape)
///
/// let step = try compressor.beginPrefill(tokenCount: n)      // or beginDecode() for one token
/// for layer in 0..<30 {
///     // q [n][9][64], k and v [n][3][64] (f32) from the layer's projections; keep a copy of q
///     // before RoPE if the policy reads pre-RoPE queries (ExpectedAttention).
///     shape.rope!.apply(to: q, tokens: n, heads: 9, positions: step.positions)
///     shape.rope!.apply(to: k, tokens: n, heads: 3, positions: step.positions)
///     try compressor.attend(layer: layer, step: step, queries: q, preRoPEQueries: qPre,
///                           keys: k, values: v, output: attentionOutput)   // [n][9][64]
///     // ... output projection, MLP ...
/// }
/// ```
///
/// A runtime that computes attention itself (on a GPU, say) replaces ``attend(layer:step:queries:preRoPEQueries:keys:values:output:attentionInputs:)``
/// by ``append(layer:step:keys:values:)``, its own attention over ``KVCache/headParts(layer:)``
/// (with the policy's ``attentionWindows(layer:)`` in prefill), and ``afterAttention(layer:step:queries:preRoPEQueries:attentionColumnSums:attentionInputs:)``.
///
/// Steps run in order and every layer of a step runs once, in order; after the last layer of a
/// step that ends a prompt, the policy's cross-layer hook runs. A policy that scores the prompt
/// with extra passes (KVzip) lists them in ``pendingReplays`` when the prompt ends: the host runs
/// each through the model in steps from ``beginReplay(tokenCount:endsReplay:)`` (the cross-layer
/// hook runs after the last one, and nothing else can begin before). A step interrupted by an error
/// leaves the sequence incomplete: the next `begin` call throws `KVError.invalidState` until
/// ``reset()``.
///
/// Not thread-safe; one compressor per sequence.
public final class KVCompressor {
    /// The cache this compressor manages.
    public let cache: KVCache
    /// The model shape the policy sees.
    public let shape: KVModelShape
    /// The thread pool attention and policy probes run on (nil: the calling thread).
    public let pool: ThreadPool?
    /// Whether the policy reads attention column sums (``KVCachePolicy/needsAttentionColumnSums``):
    /// ``attend(layer:step:queries:preRoPEQueries:keys:values:output:attentionInputs:)`` then has the attention
    /// produce them, and a host with its own attention should pass them to
    /// ``afterAttention(layer:step:queries:preRoPEQueries:attentionColumnSums:attentionInputs:)``.
    public let needsAttentionColumnSums: Bool
    /// Tokens of the sequence processed by completed steps (replays not counted).
    public private(set) var processedTokens = 0
    /// The replays the policy asked for after the prompt that just ended and that the host has not
    /// run to their end yet, in order (``KVCachePolicy/replays(afterPrompt:cache:state:)``); empty
    /// otherwise. The host runs the first one's tokens with ``beginReplay(tokenCount:endsReplay:)``.
    public private(set) var pendingReplays: [KVReplay] = []
    /// The model's attention output projection per layer, for output-aware policies (``CriticalKV``)
    /// through ``KVLayerContext/outputProjection()``; nil (the default) when the host has none, and
    /// such policies then throw. Called only when a policy asks, once per layer it compresses.
    public var outputProjection: (@Sendable (_ layer: Int) -> KVOutputProjection)?

    private var runner: any KVPolicyRunner
    private var serial = 0
    /// The step in progress, the next layer it expects, and whether that layer was appended.
    private var current: KVStep?
    private var nextLayer = 0
    private var layerAppended = false
    /// The position of the current prompt's first token (nil between prompts).
    private var promptStart: Int?
    /// Replays run to their end since the prompt ended, and whether the step in progress ends one.
    private var replaysDone = 0
    private var stepEndsReplay = false
    /// Where the prompt that asked for the replays ended: each replay's entries start there.
    private var replayStart = 0
    /// Layers still to attribute after a gradient replay's forward pass (nil: none is waiting).
    private var unattributedLayers: Set<Int>?
    private var columnSums: UnsafeMutablePointer<Float>?
    private var columnSumCapacity = 0
    /// A ZipCache cache's saliency (nil for other formats).
    private let zipCache: ZipCacheSaliency?

    /// Creates a compressor with fresh policy state for an empty or existing cache.
    /// - Parameters:
    ///   - pool: where attention and policy probes run (default: ``ThreadPool/shared``, every core;
    ///     nil: the calling thread).
    /// - Throws: `KVError.shapeMismatch` when the cache's layers, KV heads or head dimension differ
    ///   from `shape`.
    public init<P: KVCachePolicy>(policy: P, cache: KVCache, shape: KVModelShape,
                                  pool: ThreadPool? = .shared) throws(KVError) {
        guard cache.layers == shape.layers, cache.kvHeads == shape.kvHeads, cache.headDim == shape.headDim else {
            throw .shapeMismatch("cache is \(cache.layers) layers x \(cache.kvHeads) KV heads x \(cache.headDim) dims, "
                + "model shape is \(shape.layers) x \(shape.kvHeads) x \(shape.headDim)")
        }
        self.cache = cache
        self.shape = shape
        self.pool = pool
        needsAttentionColumnSums = policy.needsAttentionColumnSums
        runner = KVPolicyBox(policy: policy, state: policy.makeState(shape: shape))
        zipCache = cache.keyFormat == .zipCache
            ? ZipCacheSaliency(layers: shape.layers, kvHeads: shape.kvHeads, settings: cache.zipCache) : nil
    }

    /// Creates a compressor with a new empty cache for `shape`.
    /// - Parameters:
    ///   - cacheType: element type of cached keys and values (default f16).
    /// - Throws: `KVError.invalidParameter` for a cache type the attention cannot read (see
    ///   ``KVCache/supportedTypes``).
    public convenience init<P: KVCachePolicy>(policy: P, shape: KVModelShape, cacheType: ElementType = .f16,
                                              pool: ThreadPool? = .shared) throws(KVError) {
        try self.init(policy: policy, cache: try KVCache(shape: shape, elementType: cacheType), shape: shape, pool: pool)
    }

    deinit { columnSums?.deallocate() }

    /// The active policy.
    public var policy: any KVCachePolicy { runner.anyPolicy }

    /// Starts a new sequence: empties the cache and gives the policy fresh state.
    public func reset() {
        cache.removeAll()
        runner.reset(shape: shape)
        zipCache?.reset()
        processedTokens = 0
        pendingReplays = []
        unattributedLayers = nil
        promptStart = nil
        current = nil
        nextLayer = 0
        layerAppended = false
    }

    // MARK: - Steps

    /// Begins a prompt chunk of `tokenCount` tokens: lets the policy make room, then assigns the
    /// chunk's positions (``KVCache/nextPosition`` onwards).
    /// - Parameters:
    ///   - endsPrompt: whether this chunk ends the prompt (default true: a prompt in one chunk).
    ///     Prompt-compressing policies compress after the chunk that ends a prompt.
    /// - Throws: `KVError.emptyPrompt` for no tokens; `.capacityExceeded` when the positions would
    ///   reach ``KVModelShape/contextLength`` (the cache is not bounded by a policy that
    ///   re-positions keys); `.invalidState` when the previous step was left incomplete.
    public func beginPrefill(tokenCount: Int, endsPrompt: Bool = true) throws(KVError) -> KVStep {
        guard tokenCount >= 1 else { throw .emptyPrompt }
        return try begin(.prefill, count: tokenCount, endsPrompt: endsPrompt)
    }

    /// Begins a decode step (one generated token).
    /// - Throws: as ``beginPrefill(tokenCount:endsPrompt:)``.
    public func beginDecode() throws(KVError) -> KVStep {
        try begin(.decode, count: 1, endsPrompt: false)
    }

    /// Begins a chunk of `tokenCount` tokens of the first of ``pendingReplays``, at the positions
    /// after the cache's entries (the prompt's end, then the replay's earlier chunks). A replay may
    /// run past the model's context length (``KVModelShape/contextLength``): it only scores, and its
    /// entries leave the cache when it ends.
    /// - Parameters:
    ///   - endsReplay: whether the chunk is the replay's last: after its last layer the replay's
    ///     entries leave the cache, and after the last replay the policy's cross-layer hook runs.
    /// - Throws: `KVError.emptyPrompt` for no tokens; `.invalidState` when no replay is pending or
    ///   the previous step was left incomplete.
    public func beginReplay(tokenCount: Int, endsReplay: Bool) throws(KVError) -> KVStep {
        guard tokenCount >= 1 else { throw .emptyPrompt }
        guard !pendingReplays.isEmpty else {
            throw .invalidState("no replay is pending: beginReplay runs the replays a policy lists in pendingReplays after a prompt")
        }
        let step = try begin(.replay, count: tokenCount, endsPrompt: false)
        stepEndsReplay = endsReplay
        return step
    }

    private func begin(_ phase: KVPhase, count: Int, endsPrompt: Bool) throws(KVError) -> KVStep {
        if let layers = unattributedLayers {
            throw .invalidState("the replay's forward pass ended and \(layers.count) layer(s) still wait for "
                + "attributeReplay(layer:queries:gradientNorms:) (the policy scores with the replay's gradients); "
                + "after an interrupted backward pass, call reset() to start a new sequence")
        }
        if current != nil {
            throw .invalidState("the previous step stopped after \(nextLayer) of \(shape.layers) layers "
                + "(an error or cancellation interrupted it), so the sequence's cache is incomplete; "
                + "call reset() to start a new sequence")
        }
        if phase != .replay && !pendingReplays.isEmpty {
            throw .invalidState("the policy \(runner.anyPolicy.name) scores the prompt with \(pendingReplays.count) replay(s) "
                + "through the model (pendingReplays); run them with beginReplay(tokenCount:endsReplay:) before the next step")
        }
        if phase != .replay { try runner.makeRoom(count: count, cache: cache, shape: shape) }
        let start = cache.nextPosition
        // Replays only score, so they may run past the model's context length (as kvpress's do).
        let limit = min(phase == .replay ? Int(Int32.max) : shape.contextLength ?? Int(Int32.max), Int(Int32.max))
        guard start + count <= limit else {
            throw .capacityExceeded("positions \(start)..<\(start + count) reach the model's context length \(limit); "
                + "use a policy that bounds the cache and re-positions keys (StreamingLLM(sinks:window:repositionKeys: true)) "
                + "or start a new sequence")
        }
        serial += 1
        if phase == .prefill && promptStart == nil { promptStart = start }
        let step = KVStep(phase: phase, positions: (start..<(start + count)).map { Int32($0) },
                          isFirstChunk: processedTokens == 0, isLastChunk: phase == .prefill && endsPrompt,
                          processedBefore: processedTokens, serial: serial)
        current = step
        nextLayer = 0
        layerAppended = false
        return step
    }

    private func check(_ step: KVStep, layer: Int, appended: Bool) throws(KVError) {
        guard let current, current.serial == step.serial else {
            throw .invalidState("this step is not the one in progress; begin a step with beginPrefill or beginDecode "
                + "and run its layers before beginning the next")
        }
        guard layer == nextLayer, layerAppended == appended else {
            let expected = layerAppended ? "afterAttention for layer \(nextLayer)" : "layer \(nextLayer)'s keys and values"
            throw .invalidState("layer \(layer) out of order: the step expects \(expected) next "
                + "(each layer runs once per step, in order 0..<\(shape.layers))")
        }
    }

    // MARK: - Layers

    /// Appends the step's keys and values to `layer`, runs causal attention of the step's queries
    /// over the layer's cache (with the column sums the policy needs) into `output`, and runs the
    /// policy's hook for the layer.
    ///
    /// - Parameters:
    ///   - queries: post-RoPE f32 queries, token `t`, head `h` at `queries + (t * heads + h) * headDim`.
    ///   - preRoPEQueries: the same queries before RoPE (ExpectedAttention reads them), or nil.
    ///   - keys: post-RoPE f32 keys, token `t`, KV head `m` at `keys + (t * kvHeads + m) * headDim`.
    ///   - values: f32 values, same layout as `keys`.
    ///   - output: the attention output, same layout as `queries`.
    ///   - attentionInputs: the tokens' normed hidden states (KVzap reads them), or nil.
    /// - Throws: `KVError.invalidState` for a stale step or a layer out of order; whatever the
    ///   policy throws.
    /// - Complexity: O(heads x tokens x cached entries x headDim).
    public func attend(layer: Int, step: KVStep, queries: UnsafePointer<Float>, preRoPEQueries: UnsafePointer<Float>?,
                       keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                       output: UnsafeMutablePointer<Float>, attentionInputs: KVAttentionInputs? = nil) throws(KVError) {
        try append(layer: layer, step: step, keys: keys, values: values)
        let parts = cache.headParts(layer: layer)
        let counts = parts.map { $0.reduce(0) { $0 + $1.count } }
        let stride = counts.max() ?? 0
        let sums = needsAttentionColumnSums ? columnSumBuffer(count: parts.count * stride) : nil
        let n = step.tokenCount
        let windows = n == 1 ? nil : runner.attentionWindows(layer: layer)
        if windows == nil, let gpu = try cache.cudaLayer(layer, heads: shape.heads),
           n == 1 || shape.headDim <= CudaKVLayer.maxPrefillHeadDim {
            if n == 1 {
                try gpu.decode(query: queries, output: output, columnSums: sums, columnSumStride: stride)
            } else {
                try step.positions.withUnsafeBufferPointer { (p: UnsafeBufferPointer<Int32>) throws(KVError) in
                    try gpu.prefill(queries: queries, queryCount: n, queryTokenStride: shape.heads * shape.headDim,
                                    queryPositions: p.baseAddress!, output: output, columnSums: sums,
                                    columnSumStride: stride)
                }
            }
        } else if n == 1 {
            Attention.decode(query: queries, heads: shape.heads, headDim: shape.headDim, parts: parts, output: output,
                             columnSums: sums, columnSumStride: stride, pool: pool)
        } else {
            step.positions.withUnsafeBufferPointer { p in
                Attention.prefill(queries: queries, queryCount: n, queryTokenStride: shape.heads * shape.headDim,
                                  queryPositions: p.baseAddress!, heads: shape.heads, headDim: shape.headDim, parts: parts,
                                  output: output, columnSums: sums, columnSumStride: stride,
                                  windows: windows, pool: pool)
            }
        }
        let columnSumArrays = sums.map { f in
            counts.indices.map { m in Array(UnsafeBufferPointer(start: f + m * stride, count: counts[m])) }
        }
        try afterAttention(layer: layer, step: step, queries: queries, preRoPEQueries: preRoPEQueries,
                           attentionColumnSums: columnSumArrays, attentionInputs: attentionInputs)
    }

    /// Appends the step's keys and values to `layer` at the step's positions (for a host that
    /// runs attention itself; ``attend(layer:step:queries:preRoPEQueries:keys:values:output:attentionInputs:)``
    /// calls it).
    /// - Parameters:
    ///   - keys: post-RoPE f32 keys, token `t`, KV head `m` at `keys + (t * kvHeads + m) * headDim`.
    ///   - values: f32 values, same layout.
    /// - Throws: `KVError.invalidState` for a stale step or a layer out of order.
    public func append(layer: Int, step: KVStep, keys: UnsafePointer<Float>, values: UnsafePointer<Float>) throws(KVError) {
        try check(step, layer: layer, appended: false)
        try step.positions.withUnsafeBufferPointer { (p: UnsafeBufferPointer<Int32>) throws(KVError) in
            try cache.append(layer: layer, keys: keys, values: values, positions: p.baseAddress!, count: p.count)
        }
        layerAppended = true
    }

    /// Runs the policy's hook for `layer` after the host's attention over it (for a host that
    /// runs attention itself). After the last layer of a step that ends a prompt it also runs the
    /// policy's cross-layer hook.
    /// - Parameters:
    ///   - queries: post-RoPE f32 queries of the step, `[token][head][headDim]`.
    ///   - preRoPEQueries: the same before RoPE, or nil.
    ///   - attentionColumnSums: the attention column sums per KV head and cache row (see
    ///     ``KVLayerContext/attentionColumnSums``), or nil (policies that need them probe the
    ///     attention instead, which costs about as much as the attention).
    ///   - attentionInputs: the tokens' normed hidden states, or nil.
    /// - Throws: `KVError.invalidState` for a stale step or a layer out of order;
    ///   `.shapeMismatch` when the column sums do not hold one value per cache row of every KV
    ///   head; whatever the policy throws.
    public func afterAttention(layer: Int, step: KVStep, queries: UnsafePointer<Float>,
                               preRoPEQueries: UnsafePointer<Float>?,
                               attentionColumnSums: [[Float]]? = nil,
                               attentionInputs: KVAttentionInputs? = nil) throws(KVError) {
        try check(step, layer: layer, appended: true)
        if let sums = attentionColumnSums {
            let counts = (0..<shape.kvHeads).map { cache.count(layer: layer, head: $0) }
            guard sums.map(\.count) == counts else {
                throw .shapeMismatch("attention column sums hold \(sums.map(\.count)) values per KV head; "
                    + "layer \(layer)'s heads hold \(counts) entries: pass one sum per cache row of every KV head")
            }
        }
        try step.positions.withUnsafeBufferPointer { (p: UnsafeBufferPointer<Int32>) throws(KVError) in
            let context = KVLayerContext(layer: layer, shape: shape, phase: step.phase, queries: queries,
                                         preRoPEQueries: preRoPEQueries, queryTokenStride: shape.heads * shape.headDim,
                                         positions: p.baseAddress!, tokenCount: p.count, totalLength: step.endPosition,
                                         isFirstChunk: step.isFirstChunk, isLastChunk: step.isLastChunk, cache: cache,
                                         pool: pool, attentionColumnSums: attentionColumnSums,
                                         outputProjection: outputProjection, attentionInputs: attentionInputs)
            switch step.phase {
            case .prefill:
                zipCache?.observePrompt(context)
                try runner.prefill(context)
                if step.isLastChunk { zipCache?.quantizePrompt(cache: cache, layer: layer) }
            case .decode:
                try runner.decode(context)
                zipCache?.decodeStep(context)
            case .replay:
                // A gradient replay's hook waits for attributeReplay, after the backward pass.
                if pendingReplays.first?.gradients != true { try runner.replay(context, index: replaysDone) }
            }
        }
        // A replay's entries stay f32/f16 rows until they leave the cache.
        if step.phase != .replay { cache.compactResidual(layer: layer) }
        nextLayer += 1
        layerAppended = false
        guard nextLayer == shape.layers else { return }
        current = nil
        switch step.phase {
        case .replay:
            guard stepEndsReplay else { return }
            if pendingReplays.first?.gradients == true {
                unattributedLayers = Set(0..<shape.layers)   // its entries stay for the backward pass
            } else {
                try endReplay()
            }
        case .prefill, .decode:
            processedTokens += step.tokenCount
            guard step.isLastChunk else { return }
            let prompt = (promptStart ?? 0)..<step.endPosition
            promptStart = nil
            replayStart = cache.nextPosition
            replaysDone = 0
            pendingReplays = runner.replays(afterPrompt: prompt, cache: cache)
            if pendingReplays.isEmpty { try runner.afterPrompt(cache: cache, shape: shape, pool: pool) }
        }
    }

    /// Runs the policy's replay hook for `layer` of a replay with ``KVReplay/gradients`` once the
    /// host has run the replay forward (its entries are still in the cache) and backpropagated its
    /// objective: the context's tokens are the replay's, with their post-RoPE `queries`
    /// (`[token][head][headDim]` f32) and ``KVLayerContext/replayGradientNorms``. After the last
    /// layer is attributed (any order), the replay's entries leave the cache, as when a replay ends.
    /// - Throws: `KVError.invalidState` when no gradient replay waits for this layer;
    ///   `.shapeMismatch` for a gradient norm count other than the replay's token count; whatever
    ///   the policy throws.
    public func attributeReplay(layer: Int, queries: UnsafePointer<Float>, gradientNorms: [Float]) throws(KVError) {
        guard var layers = unattributedLayers, layers.contains(layer) else {
            throw .invalidState("no gradient replay waits for layer \(layer): attributeReplay follows the forward pass "
                + "of a replay with gradients, once per layer")
        }
        let positions = (replayStart..<cache.nextPosition).map { Int32($0) }
        guard gradientNorms.count == positions.count else {
            throw .shapeMismatch("\(gradientNorms.count) gradient norms for a replay of \(positions.count) tokens")
        }
        try positions.withUnsafeBufferPointer { (p: UnsafeBufferPointer<Int32>) throws(KVError) in
            let context = KVLayerContext(layer: layer, shape: shape, phase: .replay, queries: queries, preRoPEQueries: nil,
                                         queryTokenStride: shape.heads * shape.headDim, positions: p.baseAddress!,
                                         tokenCount: p.count, totalLength: cache.nextPosition, isFirstChunk: false,
                                         isLastChunk: false, cache: cache, pool: pool, outputProjection: outputProjection,
                                         replayGradientNorms: gradientNorms)
            try runner.replay(context, index: replaysDone)
        }
        layers.remove(layer)
        unattributedLayers = layers
        guard layers.isEmpty else { return }
        unattributedLayers = nil
        try endReplay()
    }

    /// Ends the first pending replay: its entries leave the cache (a restore pass's stay, and later
    /// replays start after them); after the last one the policy's cross-layer hook runs.
    private func endReplay() throws(KVError) {
        if pendingReplays.first?.restore != nil {
            for l in 0..<shape.layers { cache.compactResidual(layer: l) }
            replayStart = cache.nextPosition
        } else {
            try cache.removeEntries(from: replayStart)
        }
        pendingReplays.removeFirst()
        replaysDone += 1
        if pendingReplays.isEmpty { try runner.afterPrompt(cache: cache, shape: shape, pool: pool) }
    }

    /// The policy's Λ-shaped prefill windows for `layer` (``KVCachePolicy/attentionWindows(layer:state:)``),
    /// which a host with its own prefill attention must apply: nil when every head attends to all
    /// its entries.
    public func attentionWindows(layer: Int) -> [KVAttentionWindow?]? {
        runner.attentionWindows(layer: layer)
    }

    private func columnSumBuffer(count: Int) -> UnsafeMutablePointer<Float> {
        if count > columnSumCapacity || columnSums == nil {
            columnSums?.deallocate()
            columnSumCapacity = max(count, columnSumCapacity * 3 / 2, 1)
            columnSums = .allocate(capacity: columnSumCapacity)
        }
        return columnSums!
    }
}

/// Type-erased policy + state pair.
protocol KVPolicyRunner: AnyObject {
    var anyPolicy: any KVCachePolicy { get }
    func reset(shape: KVModelShape)
    func makeRoom(count: Int, cache: KVCache, shape: KVModelShape) throws(KVError)
    func prefill(_ context: KVLayerContext) throws(KVError)
    func decode(_ context: KVLayerContext) throws(KVError)
    func afterPrompt(cache: KVCache, shape: KVModelShape, pool: ThreadPool?) throws(KVError)
    func replays(afterPrompt prompt: Range<Int>, cache: KVCache) -> [KVReplay]
    func replay(_ context: KVLayerContext, index: Int) throws(KVError)
    func attentionWindows(layer: Int) -> [KVAttentionWindow?]?
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
    func makeRoom(count: Int, cache: KVCache, shape: KVModelShape) throws(KVError) {
        try policy.makeRoom(forTokens: count, cache: cache, shape: shape, state: &state)
    }
    func prefill(_ context: KVLayerContext) throws(KVError) { try policy.afterPrefill(context, state: &state) }
    func decode(_ context: KVLayerContext) throws(KVError) { try policy.afterDecode(context, state: &state) }
    func afterPrompt(cache: KVCache, shape: KVModelShape, pool: ThreadPool?) throws(KVError) {
        try policy.afterPrompt(cache: cache, shape: shape, state: &state, pool: pool)
    }
    func replays(afterPrompt prompt: Range<Int>, cache: KVCache) -> [KVReplay] {
        policy.replays(afterPrompt: prompt, cache: cache, state: &state)
    }
    func replay(_ context: KVLayerContext, index: Int) throws(KVError) {
        try policy.afterReplay(context, replay: index, state: &state)
    }
    func attentionWindows(layer: Int) -> [KVAttentionWindow?]? { policy.attentionWindows(layer: layer, state: state) }
}
