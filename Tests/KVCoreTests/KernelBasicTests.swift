import CKVKernels
import XCTest
@testable import KVCore

/// dot / axpy / scale / sum against double-precision references. Tolerance: the rigorous f32
/// summation bound gamma_(n+2) * sum|terms| (any summation order), see `summationBound`.
final class KernelBasicTests: XCTestCase {
    let sizes = [0, 1, 2, 7, 8, 9, 31, 33, 64, 100, 1000, 4099]

    func testDot() {
        var rng = SeededRNG(seed: 21)
        forEachKernelPath { path in
            for n in sizes {
                let a = rng.floats(n), b = rng.floats(n)
                let ref = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                let mag = zip(a, b).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
                let got = kvk_dot_f32(a, b, n)
                XCTAssertLessThanOrEqual(abs(Double(got) - ref), summationBound(n, mag), "\(path) n=\(n)")
            }
        }
    }

    func testSum() {
        var rng = SeededRNG(seed: 22)
        forEachKernelPath { path in
            for n in sizes {
                let a = rng.floats(n)
                let ref = a.reduce(0.0) { $0 + Double($1) }
                let mag = a.reduce(0.0) { $0 + abs(Double($1)) }
                XCTAssertLessThanOrEqual(abs(Double(kvk_sum_f32(a, n)) - ref), summationBound(n, mag), "\(path) n=\(n)")
            }
        }
    }

    func testAxpyAndScale() {
        var rng = SeededRNG(seed: 23)
        forEachKernelPath { path in
            for n in sizes {
                let x = rng.floats(n), y0 = rng.floats(n)
                let alpha: Float = 0.37
                var y = y0
                kvk_axpy_f32(alpha, x, &y, n)
                // one product and one sum rounding (or one fused rounding)
                let ref = (0..<n).map { Double(y0[$0]) + Double(alpha) * Double(x[$0]) }
                let tol = (0..<n).map { 2 * f32Unit * (abs(Double(y0[$0])) + abs(Double(alpha * x[$0]))) + 1e-30 }
                assertClose(y, ref, tolerance: tol, "\(path) axpy n=\(n)")
                var z = x
                kvk_scale_f32(alpha, &z, n)
                for i in 0..<n { XCTAssertEqual(z[i], alpha * x[i], "\(path) scale n=\(n)") }
            }
        }
    }
}
