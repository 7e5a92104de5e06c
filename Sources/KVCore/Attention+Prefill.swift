import CKVKernels

extension Attention {
    /// Causal attention of `queryCount` query tokens over ragged KV heads.
    ///
    /// Works tile by tile: a tile of query tokens for all query heads of one GQA group against
    /// tiles of `keyTile` rows, with an online softmax (running max and sum per query row), so no
    /// `queryCount x rows` matrix is ever formed. Key tiles past the last visible row are skipped;
    /// only tiles that straddle a query's position are masked.
    /// - Parameters:
    ///   - queryPositions: position of each query token (ascending).
    ///   - output: token `t`, head `h` at `output + t * heads * headDim + h * headDim`. A query that
    ///     sees no row gets zeros.
    /// - Complexity: O(heads x queryCount x visible rows x headDim) time,
    ///   O(threads x tile) extra memory.
    public static func prefill(queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                               queryPositions: UnsafePointer<Int32>, heads: Int, headDim: Int,
                               kv: [KVHeadView], scale: Float, output: UnsafeMutablePointer<Float>,
                               pool: ThreadPool?) {
        check(heads: heads, headDim: headDim, kv: kv)
        precondition(queryTokenStride >= heads * headDim, "query token stride \(queryTokenStride) < heads x headDim")
        guard queryCount > 0 else { return }
        let g = heads / kv.count
        let d = headDim
        let tq = queryTile
        let tk = keyTile
        let tiles = (queryCount + tq - 1) / tq
        let run = { (item: Int) in
            // Later query tiles first: they have the most keys, which balances the threads.
            let m = item % kv.count
            let tile = tiles - 1 - item / kv.count
            let t0 = tile * tq
            let nt = min(tq, queryCount - t0)
            let rows = g * nt  // row r = h * nt + t
            let v = kv[m]
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: rows * (2 * d + tk + 2))
            defer { buffer.deallocate() }
            let q = buffer
            let acc = q + rows * d
            let s = acc + rows * d
            let runMax = s + rows * tk
            let runSum = runMax + rows
            for h in 0..<g {
                for t in 0..<nt {
                    (q + (h * nt + t) * d).update(from: queries + (t0 + t) * queryTokenStride + (m * g + h) * d, count: d)
                }
            }
            acc.initialize(repeating: 0, count: rows * d)
            runMax.initialize(repeating: -.infinity, count: rows)
            runSum.initialize(repeating: 0, count: rows)
            let firstPos = queryPositions[t0]
            let lastPos = queryPositions[t0 + nt - 1]
            let visible = v.visibleCount(upTo: lastPos)
            var k0 = 0
            while k0 < visible {
                let nk = min(tk, visible - k0)
                kvk_scores_multi(v.keyType.kernelType, q, d, rows, v.keys + k0 * v.keyStride, v.keyStride, nk, d,
                                 scale, s, tk)
                if v.positions[k0 + nk - 1] > firstPos {
                    for t in 0..<nt {
                        let p = queryPositions[t0 + t]
                        let cut = k0 + nk > 0 ? max(0, v.visibleCount(upTo: p) - k0) : 0
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
                kvk_weighted_sum_multi(v.valueType.kernelType, s, tk, rows, v.values + k0 * v.valueStride,
                                       v.valueStride, nk, d, acc, d)
                k0 += nk
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
        let items = tiles * kv.count
        if let pool, items > 1 { pool.parallelFor(items, run) } else { for i in 0..<items { run(i) } }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif
