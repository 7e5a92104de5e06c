import CKVKernels
import XCTest
@testable import KVCore

/// Block quantization: bytes equal to a Swift port of GGML's reference quantizers (same float
/// operations, so results must match exactly), hand-computed known blocks (which pin GGML's
/// rounding: roundf half-away-from-zero for q8_0, truncation of x + 8.5 / x + 0.5 for q4_0 / q4_1),
/// dequantization against an independent decoder, and round-trip error bounds.
final class KernelQuantizationTests: XCTestCase {
    // MARK: GGML reference quantizers, ported to Swift

    private func ggmlQ8_0(_ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0..<(x.count / 32) {
            let blk = x[(b * 32)..<(b * 32 + 32)]
            var amax: Float = 0
            for v in blk { amax = max(amax, abs(v)) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            let dh = Float16(d).bitPattern
            out += [UInt8(dh & 0xFF), UInt8(dh >> 8)]
            for v in blk { out.append(UInt8(bitPattern: Int8((v * id).rounded(.toNearestOrAwayFromZero)))) }
        }
        return out
    }

    private func ggmlQ4_0(_ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0..<(x.count / 32) {
            let blk = Array(x[(b * 32)..<(b * 32 + 32)])
            var amax: Float = 0, vmax: Float = 0
            for v in blk where amax < abs(v) { amax = abs(v); vmax = v }
            let d = vmax / -8
            let id: Float = d != 0 ? 1 / d : 0
            let dh = Float16(d).bitPattern
            out += [UInt8(dh & 0xFF), UInt8(dh >> 8)]
            for j in 0..<16 {
                let q0 = min(15, Int(blk[j] * id + 8.5)), q1 = min(15, Int(blk[j + 16] * id + 8.5))
                out.append(UInt8(q0 | q1 << 4))
            }
        }
        return out
    }

    private func ggmlQ4_1(_ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for b in 0..<(x.count / 32) {
            let blk = Array(x[(b * 32)..<(b * 32 + 32)])
            let vmin = blk.min()!, vmax = blk.max()!
            let d = (vmax - vmin) / 15
            let id: Float = d != 0 ? 1 / d : 0
            let dh = Float16(d).bitPattern, mh = Float16(vmin).bitPattern
            out += [UInt8(dh & 0xFF), UInt8(dh >> 8), UInt8(mh & 0xFF), UInt8(mh >> 8)]
            for j in 0..<16 {
                let q0 = min(15, Int((blk[j] - vmin) * id + 0.5)), q1 = min(15, Int((blk[j + 16] - vmin) * id + 0.5))
                out.append(UInt8(q0 | q1 << 4))
            }
        }
        return out
    }

    private func ggml(_ t: ElementType, _ x: [Float]) -> [UInt8] {
        switch t {
        case .q8_0: return ggmlQ8_0(x)
        case .q4_0: return ggmlQ4_0(x)
        case .q4_1: return ggmlQ4_1(x)
        default: fatalError("not a block type")
        }
    }

    private func testData(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        var x = rng.floats(n, in: -3...3)
        // blocks with special structure: all zero, constant, one outlier, exact halves
        if n >= 128 {
            for j in 0..<32 { x[j] = 0 }
            for j in 32..<64 { x[j] = 1.25 }
            x[70] = 100
            for j in 96..<128 { x[j] = Float(j - 112) * 0.5 }
        }
        return x
    }

    func testBlocksMatchGGMLReference() {
        forEachKernelPath { path in
            for t in [ElementType.q8_0, .q4_0, .q4_1] {
                for n in [0, 32, 64, 160, 4096] {
                    let x = testData(n, seed: UInt64(n) + 7)
                    XCTAssertEqual(encode(t, x), ggml(t, x), "\(path) \(t) n=\(n)")
                }
            }
        }
    }

    func testKnownBlocks() {
        // q8_0: amax 127 -> d = 1 exactly; ties round half away from zero (roundf).
        var a = [Float](repeating: 0, count: 32)
        a[0] = 127; a[1] = -2.5; a[2] = 2.5; a[3] = 0.5; a[4] = -0.5; a[5] = 1.5; a[6] = -126.4
        var q8: [UInt8] = [0x00, 0x3C] + [127, 253, 3, 1, 255, 2, 130].map { UInt8($0) }
        q8 += [UInt8](repeating: 0, count: 25)
        // q4_0: the largest magnitude is -8 -> d = 1 (0x3C00); q = min(15, trunc(x + 8.5)).
        var b = [Float](repeating: 0, count: 32)
        b[0] = -8; b[1] = 7; b[2] = 7.4; b[3] = 0; b[4] = -0.5; b[5] = -0.6; b[6] = 0.5; b[16] = -8; b[17] = 3
        var q4: [UInt8] = [0x00, 0x3C]
        let low: [Int] = [0, 15, 15, 8, 8, 7, 9] + [Int](repeating: 8, count: 9)
        let high: [Int] = [0, 11] + [Int](repeating: 8, count: 14)
        for j in 0..<16 { q4.append(UInt8(low[j] | high[j] << 4)) }
        // q4_0 with a positive extreme: d = -1 (0xBC00); x = 8 -> 0, x = -7.9 -> min(15, 16) = 15.
        var c = [Float](repeating: 0, count: 32)
        c[0] = 8; c[1] = -7.9; c[2] = -7; c[3] = 4
        var q4n: [UInt8] = [0x00, 0xBC]
        let lowN: [Int] = [0, 15, 15, 4] + [Int](repeating: 8, count: 12)
        for j in 0..<16 { q4n.append(UInt8(lowN[j] | 8 << 4)) }
        // q4_1: min -1, max 14 -> d = 1, m = -1 (0xBC00); q = min(15, trunc(x + 1 + 0.5)).
        var e = [Float](repeating: 0, count: 32)
        e[0] = -1; e[1] = 14; e[2] = 2.5; e[3] = 2.4; e[16] = 13.6
        var q41: [UInt8] = [0x00, 0x3C, 0x00, 0xBC]
        let lowE: [Int] = [0, 15, 4, 3] + [Int](repeating: 1, count: 12)
        let highE: [Int] = [15] + [Int](repeating: 1, count: 15)
        for j in 0..<16 { q41.append(UInt8(lowE[j] | highE[j] << 4)) }
        forEachKernelPath { path in
            XCTAssertEqual(encode(.q8_0, a), q8, "\(path) q8_0")
            XCTAssertEqual(encode(.q4_0, b), q4, "\(path) q4_0")
            XCTAssertEqual(encode(.q4_0, c), q4n, "\(path) q4_0 positive extreme")
            XCTAssertEqual(encode(.q4_1, e), q41, "\(path) q4_1")
        }
    }

    func testDequantizeMatchesIndependentDecoder() {
        forEachKernelPath { path in
            for t in ElementType.allCases {
                for n in [0, 32, 96, 4096 + 32] {
                    let x = testData(n, seed: 99)
                    let bytes = encode(t, x)
                    var out = [Float](repeating: .nan, count: n)
                    bytes.withUnsafeBytes { p in
                        if n > 0 { kvk_dequantize(t.kernelType, p.baseAddress!, &out, n) }
                    }
                    let ref = bytes.withUnsafeBytes { referenceDecode(t, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, n) }
                    // d * q (+ m) is one f32 rounding away from the exact value
                    assertClose(out, ref, tolerance: ref.map { abs($0) * 2 * f32Unit + 1e-30 }, "\(path) \(t) n=\(n)")
                }
            }
        }
    }

    /// Round trip: block formats reconstruct within half a step (d/2) plus the scale's f16 rounding.
    func testRoundTripError() {
        let x = testData(2048, seed: 5)
        forEachKernelPath { path in
            for t in ElementType.allCases {
                let bytes = encode(t, x)
                var back = [Float](repeating: 0, count: x.count)
                bytes.withUnsafeBytes { kvk_dequantize(t.kernelType, $0.baseAddress!, &back, x.count) }
                for b in 0..<(x.count / 32) {
                    let blk = x[(b * 32)..<(b * 32 + 32)]
                    let amax = Double(blk.map { abs($0) }.max()!)
                    let range = Double(blk.max()! - blk.min()!)
                    let bound: Double
                    switch t {
                    case .f32: bound = 0
                    case .f16: bound = amax * 0x1p-11 + 0x1p-25
                    case .bf16: bound = amax * 0x1p-8
                    case .q8_0: bound = amax / 127 * 0.5 + amax * 0x1p-10
                    case .q4_0: bound = amax / 8 * 1.0 + amax * 0x1p-9 // -8..7 grid: top value clips by one step
                    case .q4_1: bound = range / 15 * 0.5 + (range + amax) * 0x1p-10
                    case .q2_1: bound = range / 3 * 0.5 + (range + amax) * 0x1p-10
                    }
                    for j in blk.indices {
                        let err = abs(Double(back[j]) - Double(x[j]))
                        if err > bound + 1e-7 {
                            XCTFail("\(path) \(t) block \(b) index \(j): err \(err) > \(bound)")
                            return
                        }
                    }
                }
            }
        }
    }

    /// kvk_quantize_act: d = max|x| / 127, q = roundf(x / d) (as x * (1/d)), s = d * sum(q); exact.
    func testQuantizeAct() {
        forEachKernelPath { path in
            for n in [0, 32, 64, 576, 1536 + 32] {
                let x = testData(n, seed: 11)
                var out = [kvk_block_q8_act](repeating: kvk_block_q8_act(), count: n / 32)
                if n > 0 { kvk_quantize_act(x, &out, n) }
                for b in 0..<(n / 32) {
                    let blk = Array(x[(b * 32)..<(b * 32 + 32)])
                    let amax = blk.map { abs($0) }.max()!
                    let d = amax / 127
                    let id: Float = d != 0 ? 1 / d : 0
                    let q = blk.map { Int8(($0 * id).rounded(.toNearestOrAwayFromZero)) }
                    let got = withUnsafeBytes(of: out[b].qs) { Array($0.bindMemory(to: Int8.self)) }
                    XCTAssertEqual(out[b].d, d, "\(path) n=\(n) block \(b) d")
                    XCTAssertEqual(got, q, "\(path) n=\(n) block \(b) qs")
                    XCTAssertEqual(out[b].s, d * Float(q.reduce(0) { $0 + Int($1) }), "\(path) n=\(n) block \(b) s")
                }
            }
        }
    }
}
