import CKVKernels

extension Attention {
    /// Rows per work item in decode: long heads are split so that every thread gets work, then the
    /// partial softmaxes are merged (log-sum-exp).
    static let decodeChunk = 1024

    /// One query token over every row of every KV head (no mask: all cached rows are in the past).
    /// The query heads of a GQA group share one pass over their KV head's rows.
    /// - Parameters:
    ///   - query: `[heads][headDim]` f32.
    ///   - output: `[heads][headDim]` f32 (a head with no rows gets zeros).
    /// - Complexity: O(heads x rows x headDim) time; reads each cached row once per KV head.
    public static func decode(query: UnsafePointer<Float>, heads: Int, headDim: Int, kv: [KVHeadView],
                              scale: Float, output: UnsafeMutablePointer<Float>, pool: ThreadPool?) {
        check(heads: heads, headDim: headDim, kv: kv)
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
