import CKVKernels
import XCTest
@testable import KVCore

/// f16 / bf16 conversions: exact (bit for bit) against Swift's Float16 and an exact bf16 rounding
/// reference, on both kernel paths.
final class KernelConversionTests: XCTestCase {
    func testF16ToF32Exhaustive() {
        let all = (0...0xFFFF).map { UInt16($0) }
        forEachKernelPath { path in
            for n in [0, 1, 7, all.count] {
                var out = [Float](repeating: .nan, count: n)
                kvk_f16_to_f32(all, &out, n)
                for i in 0..<n {
                    let expected = Float(Float16(bitPattern: all[i]))
                    if expected.isNaN {
                        XCTAssertTrue(out[i].isNaN, "\(path) 0x\(String(all[i], radix: 16))")
                    } else if out[i].bitPattern != expected.bitPattern {
                        XCTFail("\(path): f16 0x\(String(all[i], radix: 16)) -> \(out[i]), expected \(expected)")
                        return
                    }
                }
            }
        }
    }

    /// Values that exercise every rounding branch: halfway points, subnormals, overflow edges.
    private func f16EdgeCases() -> [Float] {
        var v: [Float] = [0, -0, 1, -1, 65504, 65519.99, 65520, 65536, 1e10, -1e10, .infinity, -.infinity,
                          .nan, 0x1p-14, 0x1p-24, 0x1p-25, 0x1.0001p-25, 0x1.8p-24, 0x1.8p-25, 1e-8, 1e-7,
                          .leastNonzeroMagnitude, .greatestFiniteMagnitude, 0x1p-15 + 0x1p-25]
        // exact halfway points between neighbouring halves (normal and subnormal)
        for bits in stride(from: UInt16(1), to: 0x7BFF, by: 97) {
            let a = Float(Float16(bitPattern: bits)), b = Float(Float16(bitPattern: bits + 1))
            v.append((a + b) / 2)
            v.append(-(a + b) / 2)
            v.append((a + b) / 2 + a.ulp)
        }
        return v
    }

    func testF32ToF16() {
        var rng = SeededRNG(seed: 1)
        var values = f16EdgeCases()
        for _ in 0..<20_000 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
        for _ in 0..<20_000 { values.append(Float.random(in: -70_000...70_000, using: &rng)) }
        forEachKernelPath { path in
            for n in [0, 1, 3, 17, values.count] {
                var out = [UInt16](repeating: 0x1234, count: n)
                kvk_f32_to_f16(values, &out, n)
                for i in 0..<n {
                    let expected = Float16(values[i])
                    if expected.isNaN {
                        XCTAssertTrue(Float16(bitPattern: out[i]).isNaN, "\(path): \(values[i])")
                    } else if out[i] != expected.bitPattern {
                        XCTFail("\(path): f32 \(values[i]) -> 0x\(String(out[i], radix: 16)), expected 0x\(String(expected.bitPattern, radix: 16))")
                        return
                    }
                }
            }
        }
    }

    func testBF16ToF32Exhaustive() {
        let all = (0...0xFFFF).map { UInt16($0) }
        forEachKernelPath { path in
            var out = [Float](repeating: 0, count: all.count)
            kvk_bf16_to_f32(all, &out, all.count)
            for i in 0..<all.count where out[i].bitPattern != UInt32(all[i]) << 16 {
                XCTFail("\(path): bf16 0x\(String(all[i], radix: 16))")
                return
            }
        }
    }

    /// Reference bf16 rounding: pick the nearer of the two truncation neighbours by exact distance
    /// (in double), ties to the even one.
    private func referenceBF16(_ x: Float) -> UInt16? {
        if x.isNaN { return nil }
        if x.isInfinite { return UInt16(x.bitPattern >> 16) }
        let lo = UInt16(x.bitPattern >> 16)
        let loValue = Double(Float(bitPattern: UInt32(lo) << 16))
        // the next bf16 magnitude up; past the largest finite one, IEEE rounds as if it were 2^128
        let hiIsInf = (lo &+ 1) & 0x7FFF == 0x7F80
        let hiValue = hiIsInf ? (x < 0 ? -0x1p128 : 0x1p128) : Double(Float(bitPattern: UInt32(lo &+ 1) << 16))
        let dl = abs(Double(x) - loValue), dh = abs(hiValue - Double(x))
        if dl < dh { return lo }
        if dh < dl { return lo &+ 1 }
        return lo & 1 == 0 ? lo : lo &+ 1
    }

    func testF32ToBF16() {
        var rng = SeededRNG(seed: 2)
        var values: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .nan, .greatestFiniteMagnitude,
                               -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 1 + 0x1p-8, 1 + 0x1p-8 + 0x1p-23,
                               1 + 3 * 0x1p-8, Float(bitPattern: 0x7F7F_8000), Float(bitPattern: 0x7F7F_7FFF)]
        for _ in 0..<40_000 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))) }
        forEachKernelPath { path in
            var out = [UInt16](repeating: 0, count: values.count)
            kvk_f32_to_bf16(values, &out, values.count)
            for i in 0..<values.count {
                if let expected = referenceBF16(values[i]) {
                    if out[i] != expected {
                        XCTFail("\(path): \(values[i]) (0x\(String(values[i].bitPattern, radix: 16))) -> 0x\(String(out[i], radix: 16)), expected 0x\(String(expected, radix: 16))")
                        return
                    }
                } else {
                    XCTAssertTrue(Float(bitPattern: UInt32(out[i]) << 16).isNaN, "\(path): NaN stays NaN")
                }
            }
        }
    }

    func testRowBytes() {
        XCTAssertEqual(kvk_row_bytes(KVK_F32, 10), 40)
        XCTAssertEqual(kvk_row_bytes(KVK_F16, 10), 20)
        XCTAssertEqual(kvk_row_bytes(KVK_BF16, 10), 20)
        XCTAssertEqual(kvk_row_bytes(KVK_Q8_0, 64), 68)
        XCTAssertEqual(kvk_row_bytes(KVK_Q4_0, 64), 36)
        XCTAssertEqual(kvk_row_bytes(KVK_Q4_1, 64), 40)
        for t in ElementType.allCases {
            XCTAssertEqual(kvk_row_bytes(t.kernelType, 96), t.byteCount(elements: 96))
        }
    }

    func testDispatchSwitches() {
        let saved = Kernels.isa
        defer { Kernels.use(saved) }
        Kernels.forceScalar = true
        XCTAssertEqual(Kernels.isa, .scalar)
        XCTAssertTrue(Kernels.forceScalar)
        Kernels.forceScalar = false
        XCTAssertEqual(Kernels.isa, Kernels.bestISA)
        XCTAssertFalse(Kernels.forceScalar)
        let supported = Kernels.supportedISAs
        XCTAssertEqual(supported.first, Kernels.bestISA)
        XCTAssertEqual(supported.last, .scalar)
        for isa in supported {
            XCTAssertTrue(Kernels.use(isa))
            XCTAssertEqual(Kernels.isa, isa)
        }
        for isa in Kernels.ISA.allCases where !supported.contains(isa) {
            let before = Kernels.isa
            XCTAssertFalse(Kernels.use(isa), "\(isa) is not supported here and must be refused")
            XCTAssertEqual(Kernels.isa, before)
        }
        #if arch(x86_64)
        XCTAssertFalse(supported.contains(.neon))
        XCTAssertTrue(supported.contains(.avx2) || supported == [.scalar])
        #elseif arch(arm64)
        XCTAssertEqual(Kernels.bestISA, .neon)
        #endif
    }
}
