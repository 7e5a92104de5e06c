extension KVCache {
    /// The default attention scale `1 / sqrt(headDim)`.
    public var defaultAttentionScale: Float { 1 / Float(headDim).squareRoot() }

    /// Decode attention of one query token over every entry of `layer` (calls `Attention.decode`).
    ///
    /// - Parameters:
    ///   - layer: the layer.
    ///   - query: f32 post-RoPE query, `[heads][headDim]`.
    ///   - heads: query heads (a multiple of ``kvHeads``; GQA: query head `h` reads KV head
    ///     `h / (heads / kvHeads)`).
    ///   - output: `[heads][headDim]` f32.
    ///   - scale: softmax scale (default `1 / sqrt(headDim)`).
    ///   - columnSums: nil, or where this step's attention column sums go (what
    ///     ``KVLayerContext/attentionColumnSums`` holds): KV head `m`, row `j` at
    ///     `columnSums + m * columnSumStride + j`, the sum over the query heads of group `m` of
    ///     their softmax probability of row `j`.
    ///   - columnSumStride: floats between KV heads in `columnSums` (at least the layer's largest
    ///     head count).
    ///   - pool: thread pool (nil: the calling thread).
    /// - Precondition: `heads` is a positive multiple of ``kvHeads``.
    public func attend(layer: Int, query: UnsafePointer<Float>, heads: Int, output: UnsafeMutablePointer<Float>,
                       scale: Float? = nil, columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0,
                       pool: ThreadPool? = nil) {
        precondition(heads >= kvHeads && heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        Attention.decode(query: query, heads: heads, headDim: headDim, parts: headParts(layer: layer),
                         scale: scale ?? defaultAttentionScale, output: output, columnSums: columnSums,
                         columnSumStride: columnSumStride, pool: pool)
    }

    /// Causal prefill attention of `queryCount` tokens over `layer` (calls `Attention.prefill`): key
    /// `j` is visible to query `t` iff its position is `<= queryPositions[t]`.
    ///
    /// - Parameters:
    ///   - layer: the layer.
    ///   - queries: token `t`, head `h` at `queries + t * queryTokenStride + h * headDim` (f32, post-RoPE).
    ///   - queryCount: tokens.
    ///   - queryTokenStride: floats between consecutive tokens (>= heads x headDim).
    ///   - queryPositions: each token's position.
    ///   - heads: query heads (a multiple of ``kvHeads``).
    ///   - output: token `t`, head `h` at `output + (t * heads + h) * headDim`.
    ///   - scale: softmax scale (default `1 / sqrt(headDim)`).
    ///   - columnSums: nil, or where the attention column sums go (what
    ///     ``KVLayerContext/attentionColumnSums`` holds): KV head `m`, row `j` at
    ///     `columnSums + m * columnSumStride + j`, the sum over the queries and the query heads of
    ///     group `m` of their softmax probabilities of row `j`.
    ///   - columnSumStride: floats between KV heads in `columnSums` (at least the layer's largest
    ///     head count).
    ///   - pool: thread pool (nil: the calling thread).
    /// - Precondition: `heads` is a positive multiple of ``kvHeads``.
    public func attendPrefill(layer: Int, queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                              queryPositions: UnsafePointer<Int32>, heads: Int,
                              output: UnsafeMutablePointer<Float>, scale: Float? = nil,
                              columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0,
                              pool: ThreadPool? = nil) {
        precondition(heads >= kvHeads && heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        Attention.prefill(queries: queries, queryCount: queryCount, queryTokenStride: queryTokenStride,
                          queryPositions: queryPositions, heads: heads, headDim: headDim,
                          parts: headParts(layer: layer), scale: scale ?? defaultAttentionScale,
                          output: output, columnSums: columnSums, columnSumStride: columnSumStride, pool: pool)
    }

    /// Softmax probabilities of chosen queries over the entries of `layer` (calls
    /// `Attention.observe`), causal by position (masked entries are exactly 0).
    ///
    /// Output: head `h`, query `t`, row `j` at `output + (h * queryCount + t) * outputKeyStride + j`,
    /// with `outputKeyStride >= ` the largest head count of the layer.
    public func observe(layer: Int, queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                        queryPositions: UnsafePointer<Int32>, heads: Int, output: UnsafeMutablePointer<Float>,
                        outputKeyStride: Int, scale: Float? = nil, pool: ThreadPool? = nil) {
        precondition(heads >= kvHeads && heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        Attention.observe(queries: queries, queryCount: queryCount, queryTokenStride: queryTokenStride,
                          queryPositions: queryPositions, heads: heads, headDim: headDim,
                          parts: headParts(layer: layer), scale: scale ?? defaultAttentionScale, output: output,
                          outputKeyStride: outputKeyStride, pool: pool)
    }
}
