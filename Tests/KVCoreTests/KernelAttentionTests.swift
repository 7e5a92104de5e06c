import CKVKernels
import XCTest
@testable import KVCore

/// kvk_scores / kvk_weighted_sum against double-precision references over the exactly decoded
/// stored rows (the quantization itself is tested elsewhere), for every cache type, head dims
/// 64/80/96/128/256 plus odd ones, strided rows (padding between rows) and row counts not a
/// multiple of the kernels' row groups. Tolerance: gamma_(d+2) * sum|terms| per output, plus for
/// block-quantized keys the 16-bit fixed-point rounding of the query that the SIMD paths may use
/// (at most max|q| / 65278 per element; bound taken as sum|k| * max|q| / 32767, far below the keys'
/// own quantization error), and for block-quantized values the 16-bit fixed-point rounding of the
/// weights times block scales that the SIMD weighted sums may use (`weightRoundingBound`).
final class KernelAttentionTests: XCTestCase {
    let cacheTypes: [ElementType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q2_1]

    private func dims(_ t: ElementType) -> [Int] {
        t.isBlockQuantized ? [32, 64, 96, 128, 256] : [1, 7, 17, 64, 80, 96, 128, 256]
    }

    /// n rows of d elements of type t with `pad` extra bytes between rows.
    private func makeRows(_ t: ElementType, n: Int, d: Int, pad: Int, rng: inout SeededRNG) -> (bytes: [UInt8], stride: Int) {
        let rowBytes = t.byteCount(elements: d)
        let stride = rowBytes + pad
        var bytes = [UInt8](repeating: 0xA5, count: max(n * stride, 1))
        for j in 0..<n {
            let row = encode(t, rng.floats(d, in: -2...2))
            for k in 0..<rowBytes { bytes[j * stride + k] = row[k] }
        }
        return (bytes, stride)
    }

    /// Double-precision scores of `q` against decoded keys, and their tolerances: gamma_(d+2) *
    /// sum|terms|, plus for block-quantized keys the 16-bit fixed-point rounding of the query that the
    /// SIMD paths may use (|error| <= max|q| / 65278 per element; bound taken with a factor ~2).
    /// `integerParts`: for block-quantized keys, |scale x integer code| per element (`integerMagnitudes`),
    /// what the fixed-point query multiplies; nil for the other types.
    private func expectedScores(_ keys: [[Double]], _ q: [Float], scale: Float, integerParts: [[Double]]?) -> (ref: [Double], tol: [Double]) {
        let qmax = Double(q.map { abs($0) }.max() ?? 0)
        var ref = [Double](), tol = [Double]()
        for (j, k) in keys.enumerated() {
            let terms = (0..<q.count).map { k[$0] * Double(q[$0]) }
            ref.append(Double(scale) * terms.reduce(0, +))
            let qRounding = integerParts.map { $0[j].reduce(0, +) * qmax / 32767 } ?? 0
            tol.append(Double(scale) * (summationBound(q.count + 2, terms.reduce(0) { $0 + abs($1) }) + qRounding))
        }
        return (ref, tol)
    }

    func testScores() {
        var rng = SeededRNG(seed: 31)
        forEachKernelPath { path in
            for t in cacheTypes {
                for d in dims(t) {
                    for n in [0, 1, 3, 4, 5, 17, 100] {
                        let (bytes, stride) = makeRows(t, n: n, d: d, pad: n % 2 == 0 ? 0 : 6, rng: &rng)
                        let q = rng.floats(d)
                        let scale: Float = 0.125
                        var out = [Float](repeating: .nan, count: n)
                        bytes.withUnsafeBytes { kvk_scores(t.kernelType, q, $0.baseAddress!, stride, n, d, scale, &out) }
                        let keys: [[Double]] = bytes.withUnsafeBytes { p in
                            (0..<n).map { referenceDecode(t, p.baseAddress! + $0 * stride, d) }
                        }
                        let ints: [[Double]] = bytes.withUnsafeBytes { p in
                            (0..<n).map { integerMagnitudes(t, p.baseAddress! + $0 * stride, d) }
                        }
                        let (ref, tol) = expectedScores(keys, q, scale: scale, integerParts: t.isBlockQuantized ? ints : nil)
                        assertClose(out, ref, tolerance: tol, "\(path) scores \(t) d=\(d) n=\(n)")
                    }
                }
            }
        }
    }

    func testWeightedSum() {
        var rng = SeededRNG(seed: 32)
        forEachKernelPath { path in
            for t in cacheTypes {
                for d in dims(t) {
                    for n in [0, 1, 3, 33, 100] {
                        let (bytes, stride) = makeRows(t, n: n, d: d, pad: n % 2 == 0 ? 0 : 10, rng: &rng)
                        let w = rng.floats(n, in: 0...1)
                        let out0 = rng.floats(d)
                        var out = out0
                        bytes.withUnsafeBytes { kvk_weighted_sum(t.kernelType, w, $0.baseAddress!, stride, n, d, &out) }
                        var ref = out0.map { Double($0) }, mag = out0.map { abs(Double($0)) }
                        bytes.withUnsafeBytes { p in
                            for j in 0..<n {
                                let v = referenceDecode(t, p.baseAddress! + j * stride, d)
                                for i in 0..<d {
                                    ref[i] += Double(w[j]) * v[i]
                                    mag[i] += abs(Double(w[j]) * v[i])
                                }
                            }
                        }
                        let wRounding = bytes.withUnsafeBytes {
                            weightRoundingBound(t, $0.baseAddress!, stride: stride, n: n, d: d, weights: w)
                        }
                        assertClose(out, ref, tolerance: (0..<d).map { summationBound(n + 3, mag[$0]) + wRounding[$0] },
                                    "\(path) weighted_sum \(t) d=\(d) n=\(n)")
                    }
                }
            }
        }
    }

    /// Long block-quantized key runs (q8_0, q4_0, q4_1), the shape of decode attention over such a
    /// cache (the AMX path starts at 256 q8_0 keys with head dim 64): scores of 1 to 7 query heads against the double reference, with
    /// padded rows and a key count that leaves a tail for the fallback.
    func testLongBlockScores() {
        var rng = SeededRNG(seed: 34)
        forEachKernelPath { path in
            for t in [ElementType.q8_0, .q4_0, .q4_1] {
                for d in [64, 128] {
                    for (m, n) in [(1, 512), (3, 1043), (4, 600), (7, 529)] {
                        let (bytes, stride) = makeRows(t, n: n, d: d, pad: n % 2 == 0 ? 0 : 12, rng: &rng)
                        let q = rng.floats(m * d, in: -3...3)
                        let outStride = n + 1
                        var out = [Float](repeating: .nan, count: m * outStride)
                        bytes.withUnsafeBytes {
                            kvk_scores_multi(t.kernelType, q, d, m, $0.baseAddress!, stride, n, d, 0.125, &out, outStride)
                        }
                        let keys: [[Double]] = bytes.withUnsafeBytes { p in (0..<n).map { referenceDecode(t, p.baseAddress! + $0 * stride, d) } }
                        let ints: [[Double]] = bytes.withUnsafeBytes { p in
                            (0..<n).map { integerMagnitudes(t, p.baseAddress! + $0 * stride, d) }
                        }
                        for h in 0..<m {
                            let (ref, tol) = expectedScores(keys, Array(q[(h * d)..<(h * d + d)]), scale: 0.125, integerParts: ints)
                            assertClose(Array(out[(h * outStride)..<(h * outStride + n)]), ref, tolerance: tol,
                                        "\(path) long \(t) scores d=\(d) m=\(m) n=\(n) head \(h)")
                            XCTAssertTrue(out[h * outStride + n].isNaN, "padding")
                        }
                    }
                }
            }
        }
    }

    /// kvk_scores_multi / kvk_weighted_sum_multi (several query heads per KV head) against the same
    /// double references and tolerances as the single-head kernels; padding between heads untouched.
    /// Head counts up to 13 reach the many-query (prefill) paths.
    func testMultiHead() {
        var rng = SeededRNG(seed: 33)
        forEachKernelPath { path in
            for t in cacheTypes {
                for d in (t.isBlockQuantized ? [32, 64, 128] : [7, 64, 80]) {
                    for m in [1, 2, 3, 4, 5, 8, 13] {
                        for n in [0, 1, 2, 5, 40] {
                            let (bytes, stride) = makeRows(t, n: n, d: d, pad: 4, rng: &rng)
                            let decoded: [[Double]] = bytes.withUnsafeBytes { p in
                                (0..<n).map { referenceDecode(t, p.baseAddress! + $0 * stride, d) }
                            }
                            let ints: [[Double]] = bytes.withUnsafeBytes { p in
                                (0..<n).map { integerMagnitudes(t, p.baseAddress! + $0 * stride, d) }
                            }
                            // scores
                            let qStride = d + 3, outStride = n + 2
                            let q = rng.floats(m * qStride)
                            var out = [Float](repeating: .nan, count: m * outStride)
                            bytes.withUnsafeBytes {
                                kvk_scores_multi(t.kernelType, q, qStride, m, $0.baseAddress!, stride, n, d, 0.5, &out, outStride)
                            }
                            for h in 0..<m {
                                let qh = Array(q[(h * qStride)..<(h * qStride + d)])
                                let (ref, tol) = expectedScores(decoded, qh, scale: 0.5, integerParts: t.isBlockQuantized ? ints : nil)
                                assertClose(Array(out[(h * outStride)..<(h * outStride + n)]), ref, tolerance: tol,
                                            "\(path) scores_multi \(t) d=\(d) m=\(m) n=\(n) head \(h)")
                                XCTAssertTrue(out[h * outStride + n].isNaN && out[h * outStride + n + 1].isNaN, "padding")
                            }
                            // weighted sums
                            let wStride = n + 1, oStride = d + 5
                            let w = rng.floats(m * wStride, in: 0...1)
                            let out0 = rng.floats(m * oStride)
                            var acc = out0
                            bytes.withUnsafeBytes {
                                kvk_weighted_sum_multi(t.kernelType, w, wStride, m, $0.baseAddress!, stride, n, d, &acc, oStride)
                            }
                            for h in 0..<m {
                                var ref = (0..<d).map { Double(out0[h * oStride + $0]) }
                                var mag = ref.map { abs($0) }
                                for j in 0..<n {
                                    for i in 0..<d {
                                        ref[i] += Double(w[h * wStride + j]) * decoded[j][i]
                                        mag[i] += abs(Double(w[h * wStride + j]) * decoded[j][i])
                                    }
                                }
                                let wh = Array(w[(h * wStride)..<(h * wStride + n)])
                                let wRounding = bytes.withUnsafeBytes {
                                    weightRoundingBound(t, $0.baseAddress!, stride: stride, n: n, d: d, weights: wh)
                                }
                                assertClose(Array(acc[(h * oStride)..<(h * oStride + d)]), ref,
                                            tolerance: (0..<d).map { summationBound(n + 3, mag[$0]) + wRounding[$0] },
                                            "\(path) weighted_sum_multi \(t) d=\(d) m=\(m) n=\(n) head \(h)")
                                for i in d..<oStride { XCTAssertEqual(acc[h * oStride + i], out0[h * oStride + i], "padding") }
                            }
                        }
                    }
                }
            }
        }
    }

    /// kvk_scores_weighted_sum_multi (one chunk's scores and another chunk's weighted sums in one pass)
    /// gives exactly the results of kvk_scores_multi and kvk_weighted_sum_multi on the same path, for
    /// any split of the work between the two parts (more keys than value rows and the reverse, tails
    /// that are not a multiple of 16, either part empty with its pointers nil), for the shapes the
    /// SIMD pass covers (same f32/f16/bf16 type, head dim 64, 1-4 heads) and ones it hands back.
    func testScoresAndWeightedSumsInOnePass() {
        var rng = SeededRNG(seed: 35)
        let typePairs: [(ElementType, ElementType)] = [(.f32, .f32), (.f16, .f16), (.bf16, .bf16), (.q8_0, .q8_0), (.q8_0, .f16)]
        forEachKernelPath { path in
            for (kt, vt) in typePairs {
                for d in [64, 128] {
                    for m in [1, 3, 4, 5] {
                        for (nk, nv) in [(0, 0), (0, 40), (40, 0), (33, 40), (100, 7), (64, 300), (1024, 1000)] {
                            let (keys, keyStride) = makeRows(kt, n: nk, d: d, pad: 4, rng: &rng)
                            let (values, valueStride) = makeRows(vt, n: nv, d: d, pad: 0, rng: &rng)
                            let q = rng.floats(m * d)
                            let w = rng.floats(m * nv, in: 0...1)
                            let out0 = rng.floats(m * d)
                            var scoresRef = [Float](repeating: .nan, count: m * nk), outRef = out0
                            keys.withUnsafeBytes { k in
                                values.withUnsafeBytes { v in
                                    kvk_scores_multi(kt.kernelType, q, d, m, k.baseAddress!, keyStride, nk, d, 0.125, &scoresRef, nk)
                                    kvk_weighted_sum_multi(vt.kernelType, w, nv, m, v.baseAddress!, valueStride, nv, d, &outRef, d)
                                }
                            }
                            var scores = [Float](repeating: .nan, count: m * nk), out = out0
                            keys.withUnsafeBytes { k in
                                values.withUnsafeBytes { v in
                                    scores.withUnsafeMutableBufferPointer { s in
                                        out.withUnsafeMutableBufferPointer { o in
                                            kvk_scores_weighted_sum_multi(
                                                m, d, kt.kernelType, q, d, nk > 0 ? k.baseAddress : nil, keyStride, nk, 0.125,
                                                nk > 0 ? s.baseAddress : nil, nk, vt.kernelType, w, nv,
                                                nv > 0 ? v.baseAddress : nil, valueStride, nv, nv > 0 ? o.baseAddress : nil, d)
                                        }
                                    }
                                }
                            }
                            let what = "\(path) \(kt)/\(vt) d=\(d) m=\(m) keys \(nk) values \(nv)"
                            XCTAssertEqual(scores.map(\.bitPattern), scoresRef.map(\.bitPattern), "scores, \(what)")
                            XCTAssertEqual(out.map(\.bitPattern), outRef.map(\.bitPattern), "weighted sums, \(what)")
                        }
                    }
                }
            }
        }
    }
}
