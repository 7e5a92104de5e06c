extension KVCache {
    /// The default attention scale `1 / sqrt(headDim)`.
    public var defaultAttentionScale: Float { 1 / Float(headDim).squareRoot() }

    /// Chooses where attention over this cache runs: `.cpu`, `.cuda`, or `.automatic` (CUDA when
    /// a GPU is usable). With CUDA, `KVCompressor` runs each layer's decode and prefill attention
    /// (with the column sums policies need) and ``observe(layer:queries:queryCount:queryTokenStride:queryPositions:heads:output:outputKeyStride:scale:pool:)``
    /// runs on the GPU, over a copy of each layer's entries kept on the device: the rows appended
    /// since the last call are copied in, and a layer whose rows changed otherwise (eviction,
    /// merging, re-positioning) is copied again. The cache's own rows stay in host memory, owned
    /// here. Layers the CUDA kernels do not read (KIVI groups, ZipCache, ThinK's pruned keys,
    /// DuoAttention's Λ-shaped heads, head dimensions over 128 in prefill) run on the CPU.
    /// - Throws: ``KVError/backend(_:)`` for `.cuda` where no GPU is usable.
    public func setBackend(_ choice: KVBackend) throws(KVError) {
        backend = try choice.resolved()
        cudaMirrors = []
    }

    /// The GPU copy of `layer` for `heads` query heads, brought up to date, when ``backend`` is
    /// `.cuda` and the CUDA kernels read every head of the layer; nil when attention runs on the CPU.
    /// - Throws: ``KVError/backend(_:)`` on a device error.
    public func cudaLayer(_ layer: Int, heads: Int) throws(KVError) -> CudaKVLayer? {
        guard backend == .cuda else { return nil }
        let rows = storage[layer].map { head in head.packed.isEmpty && head.pruned == nil ? head.rows : nil }
        guard rows.allSatisfy({ $0 != nil }) else { return nil }
        if cudaMirrors.count != layers { cudaMirrors = Array(repeating: nil, count: layers) }
        let counts = rows.map { $0!.count }, edits = rows.map { $0!.edits }
        if let mirror = cudaMirrors[layer], mirror.gpu.queryHeads == heads, mirror.edits == edits,
           zip(mirror.counts, counts).allSatisfy({ $0 <= $1 }) {
            var appended = true
            for (m, storage) in rows.enumerated() where appended && counts[m] > mirror.counts[m] {
                appended = try mirror.gpu.append(head: m, rows: storage!.view(), from: mirror.counts[m])
            }
            if appended {
                cudaMirrors[layer]!.counts = counts
                return mirror.gpu
            }
        }
        cudaMirrors[layer] = nil
        do {
            let reserve = max(256, (counts.max() ?? 0) / 2)
            let gpu = try CudaKVLayer(parts: headParts(layer: layer), headDim: headDim, queryHeads: heads,
                                      reserve: reserve)
            cudaMirrors[layer] = KVCudaMirror(gpu: gpu, counts: counts, edits: edits)
            cudaLayerCopies += 1
            return gpu
        } catch {
            if case .backend = error { throw error }
            return nil  // a shape the kernels do not take: the CPU runs it
        }
    }

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
    /// `Attention.observe`, or the CUDA kernels when ``backend`` is `.cuda`), causal by position
    /// (masked entries are exactly 0).
    ///
    /// Output: head `h`, query `t`, row `j` at `output + (h * queryCount + t) * outputKeyStride + j`,
    /// with `outputKeyStride >= ` the largest head count of the layer.
    public func observe(layer: Int, queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                        queryPositions: UnsafePointer<Int32>, heads: Int, output: UnsafeMutablePointer<Float>,
                        outputKeyStride: Int, scale: Float? = nil, pool: ThreadPool? = nil) {
        precondition(heads >= kvHeads && heads % kvHeads == 0, "heads must be a multiple of kvHeads")
        // On the GPU when the cache runs there; a device error here falls back to the CPU kernels,
        // which give the same probabilities (attention itself reports device errors).
        if let gpu = try? cudaLayer(layer, heads: heads), (try? gpu.observe(
            queries: queries, queryCount: queryCount, queryTokenStride: queryTokenStride, queryPositions: queryPositions,
            scale: scale ?? defaultAttentionScale, output: output, outputKeyStride: outputKeyStride)) != nil {
            return
        }
        Attention.observe(queries: queries, queryCount: queryCount, queryTokenStride: queryTokenStride,
                          queryPositions: queryPositions, heads: heads, headDim: headDim,
                          parts: headParts(layer: layer), scale: scale ?? defaultAttentionScale, output: output,
                          outputKeyStride: outputKeyStride, pool: pool)
    }
}
