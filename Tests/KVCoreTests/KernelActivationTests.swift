import CKVKernels
import Foundation
import XCTest
@testable import KVCore

/// rmsnorm, silu_mul, softmax and RoPE against double-precision references.
final class KernelActivationTests: XCTestCase {
    let sizes = [0, 1, 7, 8, 9, 33, 576, 1537]

    /// rmsnorm: relative error <= (n + 8) u (sum of squares, sqrt, division, two products).
    func testRMSNorm() {
        var rng = SeededRNG(seed: 51)
        forEachKernelPath { path in
            for n in sizes {
                let x = rng.floats(n, in: -3...3), w = rng.floats(n, in: 0.5...1.5)
                var y = [Float](repeating: .nan, count: n)
                kvk_rmsnorm(x, w, &y, n, 1e-5)
                let ms = x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(n, 1))
                let inv = 1 / (ms + 1e-5).squareRoot()
                let ref = (0..<n).map { Double(x[$0]) * inv * Double(w[$0]) }
                assertClose(y, ref, tolerance: ref.map { abs($0) * Double(n + 8) * f32Unit + 1e-30 }, "\(path) rmsnorm n=\(n)")
                // in place
                var z = x
                z.withUnsafeMutableBufferPointer { p in
                    if n > 0 { kvk_rmsnorm(p.baseAddress!, w, p.baseAddress!, n, 1e-5) }
                }
                XCTAssertEqual(z, y, "\(path) rmsnorm in place n=\(n)")
            }
        }
    }

    /// silu(g) * u: the vector exp is accurate to a few ulp; tolerance 1e-6 relative (about 16 ulp).
    func testSiluMul() {
        var rng = SeededRNG(seed: 52)
        forEachKernelPath { path in
            for n in sizes + [64] {
                var g = rng.floats(n, in: -20...20)
                if n == 64 { g[0] = -100; g[1] = 100; g[2] = 0; g[3] = -88; g[4] = 89; g[5] = -0.0 }
                let u = rng.floats(n, in: -2...2)
                var out = [Float](repeating: .nan, count: n)
                kvk_silu_mul(g, u, &out, n)
                let ref = (0..<n).map { Double(g[$0]) / (1 + exp(-Double(g[$0]))) * Double(u[$0]) }
                assertClose(out, ref, tolerance: ref.map { abs($0) * 1e-6 + 1e-35 }, "\(path) silu n=\(n)")
            }
        }
    }

    /// softmax: probabilities within 1e-6 relative + 1e-9 absolute; -inf entries exactly 0; the
    /// returned sum of exp(x - max) within 1e-6 relative.
    func testSoftmax() {
        var rng = SeededRNG(seed: 53)
        forEachKernelPath { path in
            for n in sizes + [100] {
                var x = rng.floats(n, in: -30...10)
                if n == 100 { for i in stride(from: 0, to: 100, by: 7) { x[i] = -.infinity } }
                let original = x
                let ret = kvk_softmax(&x, n)
                guard n > 0 else { XCTAssertEqual(ret, 0); continue }
                let mx = Double(original.max()!)
                let e = original.map { $0 == -.infinity ? 0 : exp(Double($0) - mx) }
                let s = e.reduce(0, +)
                assertClose(x, e.map { $0 / s }, tolerance: e.map { $0 / s * 1e-6 + 1e-9 }, "\(path) softmax n=\(n)")
                XCTAssertEqual(Double(ret), s, accuracy: s * 1e-6, "\(path) softmax sum n=\(n)")
                for i in 0..<n where original[i] == -.infinity { XCTAssertEqual(x[i], 0, "\(path) masked entry") }
            }
            var masked: [Float] = [-.infinity, -.infinity, -.infinity]
            XCTAssertEqual(kvk_softmax(&masked, 3), 0)
            XCTAssertEqual(masked, [0, 0, 0], "\(path) all masked")
            // the exponentials alone: exp(x - M) with M = max(bound, max x), M, and the sum
            for n in sizes + [100] {
                for bound in [-Float.infinity, 5, 20] {
                    var x = rng.floats(n, in: -30...10)
                    if n == 100 { for i in stride(from: 0, to: 100, by: 7) { x[i] = -.infinity } }
                    let original = x
                    var shift = bound
                    let ret = kvk_softmax_unnormalized(&x, n, &shift)
                    let expected = max(bound, original.max() ?? -.infinity)
                    XCTAssertEqual(shift, expected, "\(path) unnormalized shift n=\(n) bound=\(bound)")
                    guard expected > -.infinity else { XCTAssertEqual(ret, 0); continue }
                    let e = original.map { $0 == -.infinity ? 0 : exp(Double($0) - Double(expected)) }
                    // f32 rounding of x - M (relative |x - M| u in the result) plus a few ulp of exp
                    let tol = zip(original, e).map { x, v in
                        x == -.infinity ? 0 : v * (abs(Double(x) - Double(expected)) * f32Unit + 1e-6) + 1e-30
                    }
                    assertClose(x, e, tolerance: tol, "\(path) unnormalized n=\(n) bound=\(bound)")
                    XCTAssertEqual(Double(ret), e.reduce(0, +), accuracy: tol.reduce(0, +) + e.reduce(0, +) * 1e-6,
                                   "\(path) unnormalized sum n=\(n) bound=\(bound)")
                }
            }
            var none: [Float] = [-.infinity, -.infinity]
            var noneShift = -Float.infinity
            XCTAssertEqual(kvk_softmax_unnormalized(&none, 2, &noneShift), 0)
            XCTAssertEqual(none, [0, 0])
            XCTAssertEqual(noneShift, -.infinity)
        }
    }

    /// RoPE with f32 angles (as HF): reference rotates in double with cos/sin of the same f32 angle;
    /// tolerance 4 u (|a| + |b|) per output (cos/sin within an ulp, two products, one sum).
    func testRoPE() {
        var rng = SeededRNG(seed: 54)
        forEachKernelPath { path in
            for pairing in [KVK_ROPE_NEOX, KVK_ROPE_NORM] {
                for d in [2, 64, 80, 96, 128, 256] {
                    let positions: [Int32] = [0, 1, 17, 2047, 16_383, 131_071, 999_983, -5]
                    let heads = 3, rows = positions.count, stride = heads * d + 4
                    let invFreq = (0..<(d / 2)).map { Float(pow(100_000.0, -2.0 * Double($0) / Double(d))) }
                    let x0 = rng.floats(rows * stride)
                    var x = x0
                    kvk_rope(&x, rows, heads, d, stride, positions, invFreq, pairing)
                    var ref = x0.map { Double($0) }, tol = [Double](repeating: 0, count: x0.count)
                    for r in 0..<rows {
                        for h in 0..<heads {
                            let base = r * stride + h * d
                            for i in 0..<(d / 2) {
                                let angle = Double(Float(positions[r]) * invFreq[i])
                                let (c, s) = (cos(angle), sin(angle))
                                let (i0, i1) = pairing == KVK_ROPE_NEOX ? (i, i + d / 2) : (2 * i, 2 * i + 1)
                                let a = Double(x0[base + i0]), b = Double(x0[base + i1])
                                ref[base + i0] = a * c - b * s
                                ref[base + i1] = b * c + a * s
                                tol[base + i0] = 4 * f32Unit * (abs(a) + abs(b)) + 1e-30
                                tol[base + i1] = tol[base + i0]
                            }
                        }
                    }
                    assertClose(x, ref, tolerance: tol, "\(path) rope \(pairing) d=\(d)")
                }
            }
        }
    }
}
