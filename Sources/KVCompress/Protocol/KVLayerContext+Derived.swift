extension KVLayerContext {
    /// A context like this one whose cache holds only the rows `rows[m]` (ascending row indices) of
    /// each KV head `m` of this layer, copied as f32 with their positions: what a wrapper hands to
    /// a scorer to score a part of the cache as if it were the whole (``ChunkScorer``, ``Block``).
    /// The queries, positions and phase are this context's; the attention column sums are dropped
    /// (scorers that need attention probe the copy).
    /// - Complexity: O(copied rows x headDim).
    func restricted(to rows: [[Int]]) throws(KVError) -> KVLayerContext {
        precondition(rows.count == shape.kvHeads, "one row list per KV head")
        let d = shape.headDim, hk = shape.kvHeads
        let heads = (0..<hk).map { cache.head(layer, $0) }
        // Every position any head keeps, ascending; heads that lack one get a zero row there, which
        // `retain` then drops.
        var rowAt = [Int32: [Int]]()
        for m in 0..<hk {
            for j in rows[m] { rowAt[heads[m].position(j), default: Array(repeating: -1, count: hk)][m] = j }
        }
        let positions = rowAt.keys.sorted()
        var keys = [Float](repeating: 0, count: positions.count * hk * d), values = keys
        keys.withUnsafeMutableBufferPointer { k in
            values.withUnsafeMutableBufferPointer { v in
                for (t, p) in positions.enumerated() {
                    for (m, j) in rowAt[p]!.enumerated() where j >= 0 {
                        heads[m].key(j, into: k.baseAddress! + (t * hk + m) * d, headDim: d)
                        heads[m].value(j, into: v.baseAddress! + (t * hk + m) * d, headDim: d)
                    }
                }
            }
        }
        let copy = try KVCache(layers: shape.layers, kvHeads: hk, headDim: d, keys: .rows(.f32), values: .rows(.f32))
        try copy.append(layer: layer, keys: keys, values: values, positions: positions)
        for m in 0..<hk {
            try copy.retain(layer: layer, head: m, indices: positions.indices.filter { rowAt[positions[$0]]![m] >= 0 })
        }
        return over(copy)
    }

    /// This context over `cache` (default: the same cache) without attention column sums: what a
    /// second policy sees after a first one changed the layer's rows (``Composed``).
    func over(_ cache: KVCache? = nil) -> KVLayerContext {
        KVLayerContext(layer: layer, shape: shape, phase: phase, queries: queries, preRoPEQueries: preRoPEQueries,
                       queryTokenStride: queryTokenStride, positions: positions, tokenCount: tokenCount,
                       totalLength: totalLength, isFirstChunk: isFirstChunk, isLastChunk: isLastChunk, cache: cache ?? self.cache,
                       pool: pool, attentionColumnSums: nil, outputProjection: outputProjectionProvider,
                       attentionInputs: attentionInputs, replayGradientNorms: replayGradientNorms)
    }

    /// The scores a fresh `scorer` gives the rows `rows[m]` of each head, scored as a cache of their
    /// own (``restricted(to:)``): the scorer observes this context's tokens, then scores.
    /// - Throws: what the scorer throws; `KVError.shapeMismatch` for scores that do not fit the rows.
    func scores<S: KVScorer>(of rows: [[Int]], by scorer: S) throws(KVError) -> KVScores {
        let part = try restricted(to: rows)
        var state = scorer.makeState(shape: shape)
        try scorer.observe(part, state: &state)
        let scores = try scorer.scores(part, state: &state)
        try scores.check(against: part, scorer: String(describing: S.self))
        return scores
    }
}
