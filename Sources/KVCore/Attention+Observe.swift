import CKVKernels

extension Attention {
    /// Softmax probabilities of chosen queries over the rows of each KV head, causal by position
    /// (rows after a query's position get exactly 0), as scoring policies need them.
    /// - Parameters:
    ///   - output: head `h`, query `t`, row `j` at `output + (h * queryCount + t) * outputKeyStride + j`;
    ///     `outputKeyStride` must be at least the largest row count; entries past a head's row
    ///     count are not written.
    /// - Complexity: O(heads x queryCount x rows x headDim).
    public static func observe(queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                               queryPositions: UnsafePointer<Int32>, heads: Int, headDim: Int,
                               kv: [KVHeadView], scale: Float? = nil, output: UnsafeMutablePointer<Float>,
                               outputKeyStride: Int, pool: ThreadPool? = nil) {
        check(heads: heads, headDim: headDim, kv: kv)
        let scale = scale ?? defaultScale(headDim: headDim)
        precondition(outputKeyStride >= (kv.map(\.count).max() ?? 0), "output key stride smaller than a head's rows")
        guard queryCount > 0 else { return }
        let g = heads / kv.count
        let d = headDim
        let run = { (item: Int) in
            let h = item / queryCount
            let t = item % queryCount
            let v = kv[h / g]
            let row = output + (h * queryCount + t) * outputKeyStride
            guard v.count > 0 else { return }
            let visible = v.visibleCount(upTo: queryPositions[t])
            if visible > 0 {
                kvk_scores(v.keyType.kernelType, queries + t * queryTokenStride + h * d, v.keys, v.keyStride,
                           visible, d, scale, row)
                _ = kvk_softmax(row, visible)
            }
            (row + visible).initialize(repeating: 0, count: v.count - visible)
        }
        let items = heads * queryCount
        if let pool, items > 1 { pool.parallelFor(items, run) } else { for i in 0..<items { run(i) } }
    }
}
