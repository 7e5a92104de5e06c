import CKVKernels

extension Attention {
    /// Causal attention of `queryCount` query tokens over ragged KV heads.
    ///
    /// Works tile by tile: a tile of query tokens for all query heads of one GQA group against
    /// tiles of `keyTile` rows, with an online softmax (running max and sum per query row), so no
    /// `queryCount x rows` matrix is ever formed. Key tiles past the last visible row are skipped;
    /// only tiles that straddle a query's position are masked.
    ///
    /// With `columnSums`, the same pass also produces the attention *column sums* that accumulated-
    /// attention scorers (H2O, ObservedAttention) need: for KV head `m` and row `j`,
    /// `sum over query tokens t and over the query heads h of group m of A^h[t, j]`, with `A^h` the
    /// causal softmax probabilities of this call. The probabilities are the ones the online softmax
    /// computes anyway: each query tile keeps its unnormalized probability tiles with the running
    /// max they were taken at, and rescales them by `exp(tileMax - max) / sum` once the row's final
    /// max and sum are known. The result does not depend on the thread count (partial sums are
    /// merged in 64-bit fixed point).
    /// - Parameters:
    ///   - queryPositions: position of each query token (ascending).
    ///   - output: token `t`, head `h` at `output + t * heads * headDim + h * headDim`. A query that
    ///     sees no row gets zeros.
    ///   - columnSums: nil (default), or where to write the column sums: KV head `m`, row `j` at
    ///     `columnSums + m * columnSumStride + j` for `j < kv[m].count` (overwritten, not added to;
    ///     rows no query sees get 0; entries past a head's row count are not written).
    ///   - columnSumStride: floats between consecutive KV heads in `columnSums`, at least the largest
    ///     row count of `kv` (ignored without `columnSums`).
    /// - Complexity: O(heads x queryCount x visible rows x headDim) time,
    ///   O(threads x tile) extra memory; with `columnSums`, O(heads x queryCount x visible rows) more
    ///   time and O(threads x tile x visible rows + kv.count x rows) memory.
    public static func prefill(queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                               queryPositions: UnsafePointer<Int32>, heads: Int, headDim: Int,
                               kv: [KVHeadView], scale: Float? = nil, output: UnsafeMutablePointer<Float>,
                               columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0,
                               pool: ThreadPool? = nil) {
        prefill(queries: queries, queryCount: queryCount, queryTokenStride: queryTokenStride,
                queryPositions: queryPositions, heads: heads, headDim: headDim, parts: kv.map { [$0] }, scale: scale,
                output: output, columnSums: columnSums, columnSumStride: columnSumStride, pool: pool)
    }

    /// ``prefill(queries:queryCount:queryTokenStride:queryPositions:heads:headDim:kv:scale:output:columnSums:columnSumStride:pool:)``
    /// over KV heads whose entries live in several parts: `parts[m]` lists head `m`'s parts, its rows
    /// are their concatenation or their ``KVHeadView/headRows`` (column sums use that numbering),
    /// each part's rows ascend by position and are read in place, and one online softmax runs over
    /// all parts.
    ///
    /// With `windows`, KV head `m` with `windows[m]` non-nil attends Λ-shaped (``KVAttentionWindow``):
    /// its first `sinks` head rows (by ``KVHeadView/headRows`` where parts list them) and the rows at
    /// the last `recent` positions of each query; key tiles hidden from a whole query tile are skipped.
    public static func prefill(queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                               queryPositions: UnsafePointer<Int32>, heads: Int, headDim: Int,
                               parts: [[KVHeadView]], scale: Float? = nil, output: UnsafeMutablePointer<Float>,
                               columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0,
                               windows: [KVAttentionWindow?]? = nil, pool: ThreadPool? = nil) {
        check(heads: heads, headDim: headDim, parts: parts)
        precondition(windows == nil || windows!.count == parts.count, "one window (or nil) per KV head")
        let scale = scale ?? defaultScale(headDim: headDim)
        precondition(queryTokenStride >= heads * headDim, "query token stride \(queryTokenStride) < heads x headDim")
        let headRows = parts.map { $0.reduce(0) { $0 + $1.count } }
        let maxRows = headRows.max() ?? 0
        if columnSums != nil {
            precondition(columnSumStride >= maxRows, "column-sum stride \(columnSumStride) smaller than a head's rows")
        }
        guard queryCount > 0 else {
            if let columnSums {
                for (m, n) in headRows.enumerated() { (columnSums + m * columnSumStride).initialize(repeating: 0, count: n) }
            }
            return
        }
        let kvCount = parts.count
        let g = heads / kvCount
        let d = headDim
        let tq = queryTile
        let tk = keyTile
        let tiles = (queryCount + tq - 1) / tq
        let partials = columnSums.map { _ in FixedPointColumnSums(heads: kvCount, columns: maxRows, bound: queryCount * g) }
        let run = { (item: Int) in
            // Later query tiles first: they have the most keys, which balances the threads.
            let m = item % kvCount
            let tile = tiles - 1 - item / kvCount
            let t0 = tile * tq
            let nt = min(tq, queryCount - t0)
            let rows = g * nt  // row r = h * nt + t
            let firstPos = queryPositions[t0]
            let lastPos = queryPositions[t0 + nt - 1]
            // Key tiles: (part, first row in the part, rows, first head row); none straddles two parts.
            // A window hides the rows after the sinks at positions <= firstPos - recent from the whole tile.
            let window = windows?[m]
            var keyTileList: [(part: Int, k0: Int, nk: Int, column: Int)] = []
            var sinkRows = [Int](repeating: 0, count: parts[m].count)
            var offset = 0
            for (p, v) in parts[m].enumerated() {
                let visible = v.visibleCount(upTo: lastPos)
                var ranges = [0..<visible]
                if let window {
                    sinkRows[p] = v.rowsAmongFirst(window.sinks, offset: offset)
                    let sinkRows = min(sinkRows[p], visible)
                    let hidden = v.visibleCount(upTo: window.lastHiddenPosition(for: firstPos))
                    ranges = [0..<sinkRows, max(sinkRows, hidden)..<visible]
                }
                for range in ranges {
                    var k0 = range.lowerBound
                    while k0 < range.upperBound {
                        let nk = min(tk, range.upperBound - k0)
                        keyTileList.append((p, k0, nk, offset + k0))
                        k0 += nk
                    }
                }
                offset += v.count
            }
            // With column sums, every key tile's probabilities stay (tile kt at probs + kt * rows * tk)
            // with the running max they were taken at (tileMax + kt * rows), and a partial sum row.
            let keyTiles = partials == nil ? 1 : max(1, keyTileList.count)
            let extra = partials == nil ? 0 : keyTiles * rows + headRows[m]
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: rows * (3 * d + keyTiles * tk + 2) + extra)
            defer { buffer.deallocate() }
            let q = buffer
            let acc = q + rows * d
            let probs = acc + rows * d
            let runMax = probs + keyTiles * rows * tk
            let runSum = runMax + rows
            let tileMax = runSum + rows
            let scaled = tileMax + extra  // a tile's weighted sums of a part with channel scales
            for h in 0..<g {
                for t in 0..<nt {
                    (q + (h * nt + t) * d).update(from: queries + (t0 + t) * queryTokenStride + (m * g + h) * d, count: d)
                }
            }
            acc.initialize(repeating: 0, count: rows * d)
            runMax.initialize(repeating: -.infinity, count: rows)
            runSum.initialize(repeating: 0, count: rows)
            for (kt, tile) in keyTileList.enumerated() {
                let v = parts[m][tile.part]
                let (k0, nk) = (tile.k0, tile.nk)
                let s = partials == nil ? probs : probs + kt * rows * tk
                v.scores(q, queryStride: d, count: rows, rows: k0, nk, headDim: d, scale: scale, out: s, outStride: tk)
                if let window {
                    // Rows after the sinks at positions <= p - recent are hidden from the query at p.
                    let first = max(k0, sinkRows[tile.part])
                    if first < k0 + nk && v.positions[first] <= window.lastHiddenPosition(for: lastPos) {
                        for t in 0..<nt {
                            let end = min(k0 + nk, v.visibleCount(upTo: window.lastHiddenPosition(for: queryPositions[t0 + t])))
                            guard end > first else { continue }
                            for h in 0..<g {
                                (s + (h * nt + t) * tk + (first - k0)).initialize(repeating: -.infinity, count: end - first)
                            }
                        }
                    }
                }
                if v.positions[k0 + nk - 1] > firstPos {
                    for t in 0..<nt {
                        let p = queryPositions[t0 + t]
                        let cut = max(0, v.visibleCount(upTo: p) - k0)
                        guard cut < nk else { continue }
                        for h in 0..<g {
                            (s + (h * nt + t) * tk + cut).initialize(repeating: -.infinity, count: nk - cut)
                        }
                    }
                }
                for r in 0..<rows {
                    // row = exp(s - newMax), newMax = max(running max, this tile's max); all masked: zeros
                    var newMax = runMax[r]
                    let sum = kvk_softmax_unnormalized(s + r * tk, nk, &newMax)
                    guard newMax > -.infinity else { continue }
                    if runMax[r] > -.infinity && runMax[r] < newMax {
                        let c = expf(runMax[r] - newMax)
                        kvk_scale_f32(c, acc + r * d, d)
                        runSum[r] *= c
                    }
                    runSum[r] += sum
                    runMax[r] = newMax
                }
                if let c = v.valueChannelScales {
                    scaled.initialize(repeating: 0, count: rows * d)
                    kvk_weighted_sum_multi(v.valueType.kernelType, s, tk, rows, v.values + k0 * v.valueStride,
                                           v.valueStride, nk, d, scaled, d)
                    for r in 0..<rows { addChannelScaled(scaled + r * d, scales: c, weight: 1, to: acc + r * d, count: d) }
                } else {
                    kvk_weighted_sum_multi(v.valueType.kernelType, s, tk, rows, v.values + k0 * v.valueStride,
                                           v.valueStride, nk, d, acc, d)
                }
                if partials != nil { (tileMax + kt * rows).update(from: runMax, count: rows) }
            }
            if let partials {
                // Probability of row r, key j of tile kt: probs[kt][r][j] * exp(tileMax[kt][r] - runMax[r]) / runSum[r].
                let sum = tileMax + keyTiles * rows
                let columns = keyTileList.last.map { $0.column + $0.nk } ?? 0
                sum.initialize(repeating: 0, count: columns)
                for (kt, tile) in keyTileList.enumerated() {
                    for r in 0..<rows where runSum[r] > 0 {
                        let w = expf(tileMax[kt * rows + r] - runMax[r]) / runSum[r]
                        kvk_axpy_f32(w, probs + (kt * rows + r) * tk, sum + tile.column, tile.nk)
                    }
                }
                partials.add(head: m, sum, count: columns)
            }
            for h in 0..<g {
                for t in 0..<nt {
                    let r = h * nt + t
                    let out = output + (t0 + t) * heads * d + (m * g + h) * d
                    if runSum[r] > 0 {
                        for i in 0..<d { out[i] = acc[r * d + i] / runSum[r] }
                    } else {
                        out.initialize(repeating: 0, count: d)
                    }
                }
            }
        }
        let items = tiles * kvCount
        if let pool, items > 1 { pool.parallelFor(items, run) } else { for i in 0..<items { run(i) } }
        if let columnSums, let partials {
            for (m, n) in headRows.enumerated() {
                let out = columnSums + m * columnSumStride
                for j in 0..<n { out[j] = partials.value(head: m, column: j) }
                toHeadOrder(parts[m], out)
            }
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
