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
        observe(queries: queries, queryCount: queryCount, queryTokenStride: queryTokenStride,
                queryPositions: queryPositions, heads: heads, headDim: headDim, parts: kv.map { [$0] }, scale: scale,
                output: output, outputKeyStride: outputKeyStride, pool: pool)
    }

    /// ``observe(queries:queryCount:queryTokenStride:queryPositions:heads:headDim:kv:scale:output:outputKeyStride:pool:)``
    /// over KV heads whose entries live in several parts (`parts[m]`: head `m`'s parts; its rows are
    /// their concatenation, or their ``KVHeadView/headRows``).
    public static func observe(queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                               queryPositions: UnsafePointer<Int32>, heads: Int, headDim: Int,
                               parts: [[KVHeadView]], scale: Float? = nil, output: UnsafeMutablePointer<Float>,
                               outputKeyStride: Int, pool: ThreadPool? = nil) {
        check(heads: heads, headDim: headDim, parts: parts)
        let scale = scale ?? defaultScale(headDim: headDim)
        let headRows = parts.map { $0.reduce(0) { $0 + $1.count } }
        precondition(outputKeyStride >= (headRows.max() ?? 0), "output key stride smaller than a head's rows")
        guard queryCount > 0 else { return }
        let g = heads / parts.count
        let d = headDim
        // A work item: one query head and a block of consecutive queries, scored together against
        // each part's rows up to the block's last position (the many-query kernel reads each key
        // once per block); rows a query cannot see are then set to -inf, so the softmax gives 0.
        let block = 32
        let blocks = (queryCount + block - 1) / block
        let run = { (item: Int) in
            let h = item / blocks
            let t0 = item % blocks * block
            let t1 = min(queryCount, t0 + block)
            let first = output + (h * queryCount + t0) * outputKeyStride
            var offset = 0
            for v in parts[h / g] {
                let visible = (t0..<t1).map { v.visibleCount(upTo: queryPositions[$0]) }
                v.scores(queries + t0 * queryTokenStride + h * d, queryStride: queryTokenStride, count: t1 - t0, rows: 0,
                         visible.max()!, headDim: d, scale: scale, out: first + offset, outStride: outputKeyStride)
                for (i, n) in visible.enumerated() {
                    (first + i * outputKeyStride + offset + n).initialize(repeating: -.infinity, count: v.count - n)
                }
                offset += v.count
            }
            for t in 0..<(t1 - t0) {
                let row = first + t * outputKeyStride
                if offset > 0 { _ = kvk_softmax(row, offset) }
                toHeadOrder(parts[h / g], row)
            }
        }
        let items = heads * blocks
        if let pool, items > 1 { pool.parallelFor(items, run) } else { for i in 0..<items { run(i) } }
    }
}
