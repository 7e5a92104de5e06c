/// What a policy hook sees for one layer: the model shape, the tokens just processed (their queries
/// and positions), the sequence length so far, and the layer's cache with attention on demand.
///
/// A context is only valid during the hook call it is passed to: its pointers belong to the host.
public struct KVLayerContext {
    /// The layer index.
    public let layer: Int
    /// The model's attention shape and RoPE.
    public let shape: KVModelShape
    /// Whether this is a prefill chunk or a decode step.
    public let phase: KVPhase
    /// Post-RoPE f32 queries of the tokens just processed: token `t`, head `h` at
    /// `queries + t * queryTokenStride + h * headDim`.
    public let queries: UnsafePointer<Float>
    /// Pre-RoPE queries, same layout (nil when the host cannot provide them; policies that need them
    /// throw `KVError.invalidParameter`).
    public let preRoPEQueries: UnsafePointer<Float>?
    /// Floats between consecutive tokens in ``queries`` (>= heads x headDim).
    public let queryTokenStride: Int
    /// Positions of the tokens just processed.
    public let positions: UnsafePointer<Int32>
    /// Number of tokens just processed (1 during decode).
    public let tokenCount: Int
    /// One past the last position of the tokens just processed: the sequence length at original
    /// positions (the next token's position; in-cache after a policy re-positioned keys).
    public let totalLength: Int
    /// Whether this chunk starts the sequence (prefill only).
    public let isFirstChunk: Bool
    /// Whether this chunk ends the prompt: prefill-time policies compress here (prefill only; always
    /// true for a single-pass prefill).
    public let isLastChunk: Bool
    /// The sequence's cache (this layer already holds the new tokens).
    public let cache: KVCache
    /// Thread pool for attention probes (nil: caller's thread).
    public let pool: ThreadPool?
    /// Attention column sums of this prefill chunk or decode step, when the host's attention
    /// produced them (nil otherwise): `attentionColumnSums[m][j]` is, for KV head `m` and its cache
    /// row `j` (the layer's rows at attention time, which are the rows when the hook starts), the
    /// sum over the chunk's queries `t` and over the query heads `h` of group `m` of the causal
    /// softmax probability `A^h[t, j]` (the sum, not the group mean). `Attention.prefill` and
    /// `Attention.decode` compute them when given a `columnSums` buffer. Accumulated-attention
    /// scorers (``H2O``, ``ObservedAttentionScorer``) use them instead of probing the attention
    /// again; they are only worth producing when ``KVCachePolicy/needsAttentionColumnSums`` is true.
    public let attentionColumnSums: [[Float]]?
    /// The tokens' attention inputs (the normed hidden states), when the host provides them (nil
    /// otherwise; scorers that need them throw `KVError.invalidParameter`).
    public let attentionInputs: KVAttentionInputs?
    /// For a replay with ``KVReplay/gradients``, once the host has backpropagated its objective:
    /// `replayGradientNorms[t]` is `||∂Φ/∂a_t||₂`, the norm of the gradient of `Φ = Σ ||h||²` (the
    /// replay tokens' last-layer hidden states) with respect to this layer's attention output `a_t`
    /// (after `W_o`) of the context's token `t`; nil otherwise.
    public let replayGradientNorms: [Float]?
    /// Where ``outputProjection()`` comes from (the host's ``KVCompressor/outputProjection``).
    let outputProjectionProvider: (@Sendable (Int) -> KVOutputProjection)?

    /// Creates a context (hosts normally let ``KVCompressor`` build it).
    public init(layer: Int, shape: KVModelShape, phase: KVPhase, queries: UnsafePointer<Float>,
                preRoPEQueries: UnsafePointer<Float>?, queryTokenStride: Int, positions: UnsafePointer<Int32>,
                tokenCount: Int, totalLength: Int, isFirstChunk: Bool, isLastChunk: Bool, cache: KVCache,
                pool: ThreadPool?, attentionColumnSums: [[Float]]? = nil,
                outputProjection: (@Sendable (_ layer: Int) -> KVOutputProjection)? = nil,
                attentionInputs: KVAttentionInputs? = nil, replayGradientNorms: [Float]? = nil) {
        precondition(layer >= 0 && layer < shape.layers, "layer \(layer) out of 0..<\(shape.layers)")
        precondition(tokenCount >= 1, "a hook needs at least one token")
        precondition(queryTokenStride >= shape.heads * shape.headDim, "query token stride too small")
        if let sums = attentionColumnSums {
            precondition(sums.count == shape.kvHeads && sums.indices.allSatisfy { sums[$0].count == cache.count(layer: layer, head: $0) },
                         "attention column sums must hold one value per cache row of every KV head of the layer")
        }
        self.layer = layer
        self.shape = shape
        self.phase = phase
        self.queries = queries
        self.preRoPEQueries = preRoPEQueries
        self.queryTokenStride = queryTokenStride
        self.positions = positions
        self.tokenCount = tokenCount
        self.totalLength = totalLength
        self.isFirstChunk = isFirstChunk
        self.isLastChunk = isLastChunk
        self.cache = cache
        self.pool = pool
        self.attentionColumnSums = attentionColumnSums
        outputProjectionProvider = outputProjection
        self.attentionInputs = attentionInputs
        precondition(replayGradientNorms.map { $0.count == tokenCount } ?? true, "one gradient norm per token")
        self.replayGradientNorms = replayGradientNorms
    }

    /// This layer's attention output projection `W_o`, which output-aware selection
    /// (``CriticalSelector``) reads; the host provides it (``KVCompressor/outputProjection``).
    /// - Throws: `KVError.invalidParameter` when the host provides none, or `.shapeMismatch` when
    ///   it does not fit the model shape.
    public func outputProjection() throws(KVError) -> KVOutputProjection {
        guard let provider = outputProjectionProvider else {
            throw .invalidParameter(name: "outputProjection", value: "nil",
                                    expected: "the layer's output projection W_o: set KVCompressor.outputProjection "
                                        + "(LlamaSession does) to use an output-aware policy such as CriticalKV")
        }
        let projection = provider(layer)
        guard projection.weights.count == projection.hiddenSize * shape.heads * shape.headDim else {
            throw .shapeMismatch("the output projection of layer \(layer) holds \(projection.weights.count) floats; "
                + "expected hidden size x \(shape.heads) heads x \(shape.headDim) dims")
        }
        return projection
    }

    /// Entries of KV head `head` in this layer.
    public func count(head: Int) -> Int { cache.count(layer: layer, head: head) }

    /// Entry counts of every KV head of this layer.
    public var counts: [Int] { (0..<shape.kvHeads).map { count(head: $0) } }

    /// Original positions of KV head `head`'s entries (ascending).
    public func positions(head: Int) -> [Int32] { cache.positions(layer: layer, head: head) }

    /// Attention probabilities of arbitrary queries (layout as ``queries``) over this layer's rows.
    /// - Complexity: O(heads x count x rows x headDim) time, heads x count x rows floats of memory;
    ///   probe large query sets in blocks.
    public func attention(queries q: UnsafePointer<Float>, count: Int, tokenStride: Int,
                          positions p: UnsafePointer<Int32>) -> KVAttentionBlock {
        let stride = max(counts.max() ?? 0, 1)
        let heads = shape.heads
        var probs = [Float](repeating: 0, count: heads * count * stride)
        probs.withUnsafeMutableBufferPointer { out in
            cache.observe(layer: layer, queries: q, queryCount: count, queryTokenStride: tokenStride,
                          queryPositions: p, heads: heads, output: out.baseAddress!, outputKeyStride: stride,
                          pool: pool)
        }
        return KVAttentionBlock(probabilities: probs, heads: heads, queryCount: count, keyStride: stride)
    }

    /// Calls `body` with each query head, each of this context's tokens (its index in the context)
    /// and that token's attention probabilities over the layer's rows (``attention(tokens:)``'s
    /// rows), probing `block` tokens at a time.
    public func forEachAttentionRow(block: Int = 64, _ body: (_ head: Int, _ token: Int, _ row: UnsafePointer<Float>) -> Void) {
        for start in stride(from: 0, to: tokenCount, by: block) {
            let probes = attention(tokens: start..<min(tokenCount, start + block))
            probes.probabilities.withUnsafeBufferPointer { p in
                for h in 0..<probes.heads {
                    for t in 0..<probes.queryCount { body(h, start + t, p.baseAddress! + (h * probes.queryCount + t) * probes.keyStride) }
                }
            }
        }
    }

    /// Attention probabilities of this context's tokens `range` over this layer's rows.
    public func attention(tokens range: Range<Int>) -> KVAttentionBlock {
        precondition(range.lowerBound >= 0 && range.upperBound <= tokenCount && !range.isEmpty)
        return attention(queries: queries + range.lowerBound * queryTokenStride, count: range.count,
                         tokenStride: queryTokenStride, positions: positions + range.lowerBound)
    }
}
