import CKVKernels

extension Attention {
    /// Rows per work item in decode: long heads are split so that every thread gets work, then the
    /// partial softmaxes are merged (log-sum-exp).
    static let decodeChunk = 1024

    /// One query token over every row of every KV head (no mask: all cached rows are in the past).
    /// The query heads of a GQA group share one pass over their KV head's rows.
    ///
    /// With `columnSums`, it also hands out the softmax probabilities it computed, summed over the
    /// query heads of each group (the decode-step counterpart of `prefill`'s column sums, for
    /// accumulated-attention policies such as H2O).
    /// - Parameters:
    ///   - query: `[heads][headDim]` f32.
    ///   - output: `[heads][headDim]` f32 (a head with no rows gets zeros).
    ///   - columnSums: nil (default), or where to write, for KV head `m` and row `j`, the sum over the
    ///     query heads of group `m` of their probability of row `j`, at
    ///     `columnSums + m * columnSumStride + j` for `j < kv[m].count` (overwritten).
    ///   - columnSumStride: floats between KV heads in `columnSums`, at least the largest row count.
    /// - Complexity: O(heads x rows x headDim) time; reads each cached row once per KV head.
    public static func decode(query: UnsafePointer<Float>, heads: Int, headDim: Int, kv: [KVHeadView],
                              scale: Float, output: UnsafeMutablePointer<Float>,
                              columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0,
                              pool: ThreadPool?) {
        check(heads: heads, headDim: headDim, kv: kv)
        if columnSums != nil {
            precondition(columnSumStride >= (kv.map(\.count).max() ?? 0), "column-sum stride smaller than a head's rows")
        }
        let g = heads / kv.count
        let d = headDim
        // Work items: (kv head, chunk of rows).
        var items: [(m: Int, start: Int, end: Int)] = []
        for (m, v) in kv.enumerated() {
            var s = 0
            repeat {
                let e = min(v.count, s + decodeChunk)
                items.append((m, s, e))
                s = e
            } while s < v.count
        }
        // Per item and query head: max, sum, accumulator[d].
        let partStride = d + 2
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: items.count * g * partStride)
        defer { partials.deallocate() }
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: items.count * g * decodeChunk)
        defer { scores.deallocate() }
        let run = { (i: Int) in
            let item = items[i]
            let v = kv[item.m]
            let n = item.end - item.start
            let part = partials + i * g * partStride
            guard n > 0 else {
                for h in 0..<g { part[h * partStride] = -.infinity; part[h * partStride + 1] = 0 }
                return
            }
            let s = scores + i * g * decodeChunk
            kvk_scores_multi(v.keyType.kernelType, query + item.m * g * d, d, g,
                             v.keys + item.start * v.keyStride, v.keyStride, n, d, scale, s, decodeChunk)
            for h in 0..<g {
                let row = s + h * decodeChunk
                var maxScore = -Float.infinity
                let sum = kvk_softmax_unnormalized(row, n, &maxScore)  // row = exp(s - max)
                part[h * partStride] = maxScore
                part[h * partStride + 1] = sum
                (part + h * partStride + 2).initialize(repeating: 0, count: d)
            }
            kvk_weighted_sum_multi(v.valueType.kernelType, s, decodeChunk, g, v.values + item.start * v.valueStride,
                                   v.valueStride, n, d, part + 2, partStride)
        }
        if let pool, items.count > 1 { pool.parallelFor(items.count, run) } else { for i in 0..<items.count { run(i) } }
        // Merge the chunks of each KV head.
        var first = 0
        for m in 0..<kv.count {
            var last = first
            while last < items.count && items[last].m == m { last += 1 }
            let sums = columnSums.map { $0 + m * columnSumStride }
            sums?.initialize(repeating: 0, count: kv[m].count)
            for h in 0..<g {
                let out = output + (m * g + h) * d
                var globalMax = -Float.infinity
                for i in first..<last { globalMax = max(globalMax, partials[(i * g + h) * partStride]) }
                out.initialize(repeating: 0, count: d)
                guard globalMax > -.infinity else { continue }
                var total: Float = 0
                for i in first..<last {
                    let p = partials + (i * g + h) * partStride
                    guard p[0] > -.infinity else { continue }
                    let w = expf(p[0] - globalMax)
                    total += w * p[1]
                    kvk_axpy_f32(w, p + 2, out, d)
                }
                kvk_scale_f32(1 / total, out, d)
                // probabilities: each chunk's exp(s - chunk max) times exp(chunk max - max) / total
                guard let sums else { continue }
                for i in first..<last {
                    let p = partials + (i * g + h) * partStride
                    guard p[0] > -.infinity else { continue }
                    kvk_axpy_f32(expf(p[0] - globalMax) / total, scores + (i * g + h) * decodeChunk,
                                 sums + items[i].start, items[i].end - items[i].start)
                }
            }
            first = last
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif
