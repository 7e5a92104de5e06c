/// How far the CUDA backend's results are from the CPU kernels' on one layer (`CudaCheck`).
package struct CudaDifferences: Sendable, CustomStringConvertible {
    /// Largest absolute differences: decode output, decode column sums, prefill output, prefill
    /// column sums, observed probabilities, decode output after compaction on the device.
    package var decode: Float = 0, decodeSums: Float = 0, prefill: Float = 0, prefillSums: Float = 0,
                observe: Float = 0, compacted: Float = 0
    /// Whether compaction on the device kept exactly the positions the CPU kept.
    package var compactedPositionsEqual = true

    /// The largest of the differences.
    package var maximum: Float { [decode, decodeSums, prefill, prefillSums, observe, compacted].max()! }

    package var description: String {
        "decode \(decode), decode sums \(decodeSums), prefill \(prefill), prefill sums \(prefillSums), observe \(observe), "
            + "compacted \(compacted)" + (compactedPositionsEqual ? "" : " (compacted positions differ)")
    }
}

extension KVCache {
    /// Runs decode, prefill (with column sums) and observation on `layer` with the CPU kernels and
    /// with CUDA, evicts every third row on both (`retain` here, compaction on the device there),
    /// decodes again, and returns the largest differences. Used by the tests and `kvbench cuda`.
    /// - Parameters:
    ///   - queries: `queryCount` tokens of `heads` query heads, `[token][head][headDim]`.
    ///   - queryPositions: the tokens' positions.
    /// - Throws: ``KVError/backend(_:)`` without a GPU.
    package func cudaDifferences(layer: Int, heads: Int, queries: [Float], queryPositions: [Int32]) throws(KVError)
        -> CudaDifferences {
        let d = headDim, n = queryPositions.count
        precondition(queries.count == n * heads * d && n > 0, "queries must be [token][head][headDim]")
        var result = CudaDifferences()
        func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
            zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
        }
        let gpu = try CudaKVLayer(parts: headParts(layer: layer), headDim: d, queryHeads: heads)
        let stride = max(1, (0..<kvHeads).map { count(layer: layer, head: $0) }.max() ?? 0)
        let last = Array(queries[((n - 1) * heads * d)...])
        func decodeBoth(_ gpu: CudaKVLayer) throws(KVError) -> (Float, Float) {
            var cpuOut = [Float](repeating: 0, count: heads * d), gpuOut = cpuOut
            var cpuSums = [Float](repeating: 0, count: kvHeads * stride), gpuSums = cpuSums
            attend(layer: layer, query: last, heads: heads, output: &cpuOut, columnSums: &cpuSums, columnSumStride: stride)
            try gpu.decode(query: last, output: &gpuOut, columnSums: &gpuSums, columnSumStride: stride)
            return (maxDiff(cpuOut, gpuOut), maxDiff(cpuSums, gpuSums))
        }
        (result.decode, result.decodeSums) = try decodeBoth(gpu)
        if d <= CudaKVLayer.maxPrefillHeadDim {
            var cpuOut = [Float](repeating: 0, count: n * heads * d), gpuOut = cpuOut
            var cpuSums = [Float](repeating: 0, count: kvHeads * stride), gpuSums = cpuSums
            attendPrefill(layer: layer, queries: queries, queryCount: n, queryTokenStride: heads * d,
                          queryPositions: queryPositions, heads: heads, output: &cpuOut, columnSums: &cpuSums,
                          columnSumStride: stride)
            try gpu.prefill(queries: queries, queryCount: n, queryTokenStride: heads * d, queryPositions: queryPositions,
                            output: &gpuOut, columnSums: &gpuSums, columnSumStride: stride)
            result.prefill = maxDiff(cpuOut, gpuOut)
            result.prefillSums = maxDiff(cpuSums, gpuSums)
        }
        var cpuProbs = [Float](repeating: 0, count: heads * n * stride), gpuProbs = cpuProbs
        Attention.observe(queries: queries, queryCount: n, queryTokenStride: heads * d, queryPositions: queryPositions,
                          heads: heads, headDim: d, parts: headParts(layer: layer), scale: defaultAttentionScale,
                          output: &cpuProbs, outputKeyStride: stride)
        try gpu.observe(queries: queries, queryCount: n, queryTokenStride: heads * d, queryPositions: queryPositions,
                        output: &gpuProbs, outputKeyStride: stride)
        result.observe = maxDiff(cpuProbs, gpuProbs)
        // Eviction: every third row of every head goes, on both sides.
        let keep = (0..<kvHeads).map { m in (0..<count(layer: layer, head: m)).filter { $0 % 3 != 1 } }
        let compacted = try gpu.compacted(keeping: keep.map { $0.map(Int32.init) })
        for m in 0..<kvHeads { try retain(layer: layer, head: m, indices: keep[m]) }
        for m in 0..<kvHeads where try compacted.positions(head: m) != positions(layer: layer, head: m) {
            result.compactedPositionsEqual = false
        }
        (result.compacted, _) = try decodeBoth(compacted)
        return result
    }
}
