import CKVKernels

extension Attention {
    /// Rows per work item in decode: long heads are split so that every thread gets work, then the
    /// partial softmaxes are merged (log-sum-exp). Each thread claims runs of consecutive items and
    /// computes an item's scores in the same kernel pass as its previous item's weighted sums
    /// (`kvk_scores_weighted_sum_multi`).
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
                              scale: Float? = nil, output: UnsafeMutablePointer<Float>,
                              columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0,
                              pool: ThreadPool? = nil) {
        decode(query: query, heads: heads, headDim: headDim, parts: kv.map { [$0] }, scale: scale, output: output,
               columnSums: columnSums, columnSumStride: columnSumStride, pool: pool)
    }

    /// ``decode(query:heads:headDim:kv:scale:output:columnSums:columnSumStride:pool:)`` over KV heads
    /// whose entries live in several parts: `parts[m]` lists head `m`'s parts, and its rows are their
    /// concatenation (row `j` of part `p` is head row `j` plus the rows of parts `0 ..< p`), or, for
    /// parts that list them, their ``KVHeadView/headRows``; column sums use that numbering. Each part's rows are read in place and the partial softmaxes of all
    /// parts and chunks are merged exactly (log-sum-exp).
    public static func decode(query: UnsafePointer<Float>, heads: Int, headDim: Int, parts: [[KVHeadView]],
                              scale: Float? = nil, output: UnsafeMutablePointer<Float>,
                              columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0,
                              pool: ThreadPool? = nil) {
        check(heads: heads, headDim: headDim, parts: parts)
        let scale = scale ?? defaultScale(headDim: headDim)
        let headRows = parts.map { $0.reduce(0) { $0 + $1.count } }
        if columnSums != nil {
            precondition(columnSumStride >= (headRows.max() ?? 0), "column-sum stride smaller than a head's rows")
        }
        let g = heads / parts.count
        let d = headDim
        // Work items: (kv head, part, chunk of the part's rows, the part's first head row).
        var items: [(m: Int, part: Int, start: Int, end: Int, offset: Int)] = []
        for (m, head) in parts.enumerated() {
            var offset = 0
            for (p, v) in head.enumerated() where v.count > 0 || (p == head.count - 1 && offset == 0) {
                var s = 0
                repeat {
                    let e = min(v.count, s + decodeChunk)
                    items.append((m, p, s, e, offset))
                    s = e
                } while s < v.count
                offset += v.count
            }
        }
        // Per item and query head: max, sum, accumulator[d].
        let partStride = d + 2
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: items.count * g * partStride)
        defer { partials.deallocate() }
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: items.count * g * decodeChunk)
        defer { scores.deallocate() }
        // One kernel pass: item i's scores and item i - 1's weighted sums (the value rows stream in
        // while the scores compute); either may be absent at the ends of a worker's run.
        func pass(scoresOf i: Int?, sumsOf p: Int?) {
            var keys: UnsafeRawPointer?, keyStride = 0, keyCount = 0, keyType = KVK_F32, keyHead = 0
            if let i {
                let item = items[i], v = parts[item.m][item.part]
                if v.scoresSeparately {  // KIVI codes or pruned keys: their own kernel, then the sums alone below
                    v.scores(query + item.m * g * d, queryStride: d, count: g, rows: item.start, item.end - item.start,
                             headDim: d, scale: scale, out: scores + i * g * decodeChunk, outStride: decodeChunk)
                } else {
                    keys = UnsafeRawPointer(v.keys + item.start * v.keyStride)
                    (keyStride, keyCount, keyType) = (v.keyStride, item.end - item.start, v.keyType.kernelType)
                }
                keyHead = item.m
            }
            var values: UnsafeRawPointer?, valueStride = 0, valueCount = 0, valueType = KVK_F32
            if let p {
                let item = items[p], v = parts[item.m][item.part]
                values = UnsafeRawPointer(v.values + item.start * v.valueStride)
                (valueStride, valueCount, valueType) = (v.valueStride, item.end - item.start, v.valueType.kernelType)
            }
            kvk_scores_weighted_sum_multi(g, d, keyType, query + keyHead * g * d, d, keys, keyStride, keyCount, scale,
                                          keyCount > 0 ? i.map { scores + $0 * g * decodeChunk } : nil, decodeChunk,
                                          valueType, p.map { scores + $0 * g * decodeChunk }, decodeChunk, values,
                                          valueStride, valueCount, p.map { partials + $0 * g * partStride + 2 }, partStride)
        }
        // After item i's scores: its softmax (scores -> exp(s - max)) and zeroed accumulators.
        func normalize(_ i: Int) {
            let n = items[i].end - items[i].start
            let part = partials + i * g * partStride
            for h in 0..<g {
                let row = scores + (i * g + h) * decodeChunk
                var maxScore = -Float.infinity
                let sum = n > 0 ? kvk_softmax_unnormalized(row, n, &maxScore) : 0
                part[h * partStride] = maxScore
                part[h * partStride + 1] = sum
                (part + h * partStride + 2).initialize(repeating: 0, count: d)
            }
        }
        // Work is handed out in runs of consecutive items from one counter, so that a thread slowed
        // down by anything else on its core simply takes fewer runs; each thread pipelines every item
        // it claims with the one it claimed before, across runs too.
        let threads = pool?.threadCount ?? 1
        let runLength = max(1, items.count / (6 * threads))
        let nextRun = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        defer { nextRun.deallocate() }
        nextRun.initialize(to: 0)
        let run = { (_: Int) in
            var previous: Int?
            while true {
                let start = kvk_atomic_fetch_add(nextRun, 1) * runLength
                guard start < items.count else { break }
                for i in start..<min(items.count, start + runLength) {
                    pass(scoresOf: i, sumsOf: previous)
                    let item = items[i]
                    if !parts[item.m][item.part].scoresSeparately {  // (the separate path added them in scores)
                        parts[item.m][item.part].addLogCounts(rows: item.start, item.end - item.start, count: g,
                                                              to: scores + i * g * decodeChunk, outStride: decodeChunk)
                    }
                    normalize(i)
                    previous = i
                }
            }
            if let previous { pass(scoresOf: nil, sumsOf: previous) }
        }
        if let pool, threads > 1 { pool.parallelFor(threads, run) } else { run(0) }
        // Merge the chunks of each KV head.
        var first = 0
        for m in 0..<parts.count {
            var last = first
            while last < items.count && items[last].m == m { last += 1 }
            let sums = columnSums.map { $0 + m * columnSumStride }
            sums?.initialize(repeating: 0, count: headRows[m])
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
                    if let c = parts[m][items[i].part].valueChannelScales {
                        addChannelScaled(p + 2, scales: c, weight: w, to: out, count: d)
                    } else {
                        kvk_axpy_f32(w, p + 2, out, d)
                    }
                }
                kvk_scale_f32(1 / total, out, d)
                // probabilities: each chunk's exp(s - chunk max) times exp(chunk max - max) / total
                guard let sums else { continue }
                for i in first..<last {
                    let p = partials + (i * g + h) * partStride
                    guard p[0] > -.infinity else { continue }
                    kvk_axpy_f32(expf(p[0] - globalMax) / total, scores + (i * g + h) * decodeChunk,
                                 sums + items[i].offset + items[i].start, items[i].end - items[i].start)
                }
            }
            if let sums { toHeadOrder(parts[m], sums) }
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
