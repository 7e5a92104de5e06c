import CKVKernels
import XCTest
@testable import KVCore

/// KIVI key groups (`kvk_kivi_quantize_keys`, `kvk_kivi_dequantize_key`, `kvk_kivi_scores_multi`)
/// against an independent byte-by-byte decoding and double-precision scores, on every kernel path.
final class KernelKIVITests: XCTestCase {
    /// Channel `c` of a code row, decoded from the documented layout: per 32 channels `4 * bits`
    /// bytes, channel `i` of a chunk in bits `bits * (i / (4 * bits))` of byte `i % (4 * bits)`.
    private func code(_ row: UnsafeRawPointer, bits: Int, channel c: Int) -> Int {
        let chunkBytes = 4 * bits, e = c % 32
        let byte = row.load(fromByteOffset: c / 32 * chunkBytes + e % chunkBytes, as: UInt8.self)
        return Int(byte >> UInt8(bits * (e / chunkBytes))) & ((1 << bits) - 1)
    }

    /// A quantized group: codes (rows `stride` bytes apart, with padding), f16 parameters, and the
    /// rows decoded in double precision from the bytes.
    private func group(bits: Int, n: Int, d: Int, rng: inout SeededRNG, constantChannel: Int? = nil)
        -> (codes: [UInt8], stride: Int, params: [UInt16], keys: [[Double]], source: [Float]) {
        var source = rng.floats(n * d, in: -3...3)
        for c in 0..<d where c % 5 == 0 { for r in 0..<n { source[r * d + c] *= 8 } }  // outlier channels
        if let c = constantChannel { for r in 0..<n { source[r * d + c] = 0.7 } }
        let stride = d * bits / 8 + 3
        var codes = [UInt8](repeating: 0xEE, count: n * stride)
        var params = [UInt16](repeating: 0, count: 2 * d)
        codes.withUnsafeMutableBytes { cb in
            kvk_kivi_quantize_keys(Int32(bits), source, d, n, d, cb.baseAddress!, stride, &params)
        }
        let keys: [[Double]] = codes.withUnsafeBytes { cb in
            (0..<n).map { r in
                (0..<d).map { c in
                    halfToDouble(params[c]) * Double(code(cb.baseAddress! + r * stride, bits: bits, channel: c))
                        + halfToDouble(params[d + c])
                }
            }
        }
        return (codes, stride, params, keys, source)
    }

    func testQuantizationRoundTrip() {
        var rng = SeededRNG(seed: 71)
        forEachKernelPath { path in
            for bits in [2, 4] {
                for (n, d) in [(1, 32), (32, 64), (17, 128), (32, 256)] {
                    let g = group(bits: bits, n: n, d: d, rng: &rng, constantChannel: 3)
                    for c in 0..<d {
                        let column = (0..<n).map { Double(g.source[$0 * d + c]) }
                        let range = column.max()! - column.min()!
                        // half a step of the stored scale, plus the f16 rounding of the min and scale
                        let bound = range / Double((1 << bits) - 1) * 0.5 + (range + abs(column.min()!)) * 0x1p-10
                        for r in 0..<n where abs(g.keys[r][c] - column[r]) > bound + 1e-6 {
                            XCTFail("\(path) kivi\(bits) n=\(n) d=\(d) row \(r) channel \(c): \(g.keys[r][c]) vs \(column[r])")
                            return
                        }
                    }
                    XCTAssertEqual(halfToDouble(g.params[3]), 0, "a constant channel gets scale 0")
                    XCTAssertEqual(g.keys[0][3], halfToDouble(Float16(0.7).bitPattern), "and decodes to its f16 value")
                    g.codes.withUnsafeBytes { cb in
                        for r in [0, n - 1] {
                            var out = [Float](repeating: .nan, count: d)
                            kvk_kivi_dequantize_key(Int32(bits), cb.baseAddress! + r * g.stride, g.params, d, &out)
                            assertClose(out, g.keys[r], tolerance: g.keys[r].map { 4 * f32Unit * (abs($0) + 64) },
                                        "\(path) dequantize kivi\(bits) row \(r)")
                        }
                    }
                }
            }
        }
    }

    func testScores() {
        var rng = SeededRNG(seed: 72)
        forEachKernelPath { path in
            for bits in [2, 4] {
                for d in [32, 64, 96, 128, 256] {
                    for n in [0, 1, 5, 32] {
                        for m in [1, 3, 5] {
                            let g = group(bits: bits, n: max(n, 1), d: d, rng: &rng)
                            let qs = rng.floats(m * d + 7)
                            let scale: Float = 0.125
                            let outStride = n + 2
                            var out = [Float](repeating: .nan, count: m * outStride)
                            g.codes.withUnsafeBytes { cb in
                                kvk_kivi_scores_multi(Int32(bits), qs, d, m, cb.baseAddress!,
                                                      g.stride, g.params, n, d, scale, &out, outStride)
                            }
                            for h in 0..<m {
                                let q = (0..<d).map { Double(qs[h * d + $0]) }
                                var ref = [Double](), tol = [Double]()
                                for j in 0..<n {
                                    ref.append(Double(scale) * (0..<d).reduce(0.0) { $0 + q[$1] * g.keys[j][$1] })
                                    // the kernel sums q*scale*code and q*min apart: bound both magnitudes
                                    let mag = (0..<d).reduce(0.0) { s, c in
                                        s + abs(q[c]) * (abs(g.keys[j][c] - halfToDouble(g.params[d + c])) + abs(halfToDouble(g.params[d + c])))
                                    }
                                    // a SIMD path may round q' = q * scale_c to 16-bit fixed point (contract):
                                    // error <= max|q'| / 65278 per code unit, bound taken with a factor ~2
                                    let qPrime = (0..<d).map { abs(q[$0] * halfToDouble(g.params[$0])) }
                                    let codes = (0..<d).reduce(0.0) { s, c in
                                        let step = halfToDouble(g.params[c])
                                        return s + (step == 0 ? 0 : abs((g.keys[j][c] - halfToDouble(g.params[d + c])) / step))
                                    }
                                    tol.append(Double(scale) * (summationBound(2 * d + 4, 2 * mag) + codes * qPrime.max()! / 32767))
                                }
                                let got = Array(out[(h * outStride)..<(h * outStride + n)])
                                assertClose(got, ref, tolerance: tol, "\(path) kivi\(bits) scores d=\(d) n=\(n) m=\(m) head \(h)")
                                XCTAssertTrue(out[h * outStride + n].isNaN, "\(path): nothing written past n")
                            }
                        }
                    }
                }
            }
        }
    }
}
