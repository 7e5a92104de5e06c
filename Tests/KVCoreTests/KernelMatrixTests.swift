import CKVKernels
import XCTest
@testable import KVCore

/// matvec / matmul (f32 activations) and the int8-activation products, against double-precision
/// references over exactly decoded weights. Tolerance: gamma_(cols+2) * sum|terms| per output; for
/// the q8act path the reference uses the very activation blocks the kernel got, so the only error
/// is f32 accumulation of exact integer block dots (same bound).
final class KernelMatrixTests: XCTestCase {
    let weightTypes: [ElementType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1]

    private func makeMatrix(_ t: ElementType, rows: Int, cols: Int, rng: inout SeededRNG) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<rows { bytes += encode(t, rng.floats(cols, in: -1...1)) }
        return bytes.isEmpty ? [0] : bytes
    }

    private func decodedRows(_ t: ElementType, _ bytes: [UInt8], rows: Int, cols: Int) -> [[Double]] {
        let rb = t.byteCount(elements: cols)
        return bytes.withUnsafeBytes { p in (0..<rows).map { referenceDecode(t, p.baseAddress! + $0 * rb, cols) } }
    }

    /// For q4_1 the kernels compute d * sum(q x) + m * sum(x) separately, so their rounding scales
    /// with |m| sum|x| even when d q + m cancels: this is that extra magnitude (0 for other types).
    private func minMagnitude(_ t: ElementType, _ bytes: [UInt8], row: Int, cols: Int, absX: (Int) -> Double) -> Double {
        guard t == .q4_1 else { return 0 }
        let rb = t.byteCount(elements: cols)
        var total = 0.0
        bytes.withUnsafeBytes { p in
            for b in 0..<(cols / 32) {
                let m = abs(halfToDouble(readU16(p.baseAddress!, row * rb + b * 20 + 2)))
                for j in 0..<32 { total += 2 * m * absX(b * 32 + j) }
            }
        }
        return total
    }

    private func colsFor(_ t: ElementType) -> [Int] { t.isBlockQuantized ? [32, 96, 576] : [1, 9, 64, 100, 576] }

    func testMatvecAndMatmul() {
        var rng = SeededRNG(seed: 41)
        forEachKernelPath { path in
            for t in weightTypes {
                for cols in colsFor(t) {
                    for rows in [0, 1, 5, 8, 13] {
                        let w = makeMatrix(t, rows: rows, cols: cols, rng: &rng)
                        let dec = decodedRows(t, w, rows: rows, cols: cols)
                        for n in [1, 2, 3, 5] {
                            let x = rng.floats(n * cols)
                            let ldy = rows + 3
                            var y = [Float](repeating: .nan, count: n * ldy)
                            w.withUnsafeBytes { p in
                                if n == 1 { kvk_matvec(t.kernelType, p.baseAddress!, rows, cols, x, &y) }
                                else { kvk_matmul(t.kernelType, p.baseAddress!, rows, cols, x, n, &y, ldy) }
                            }
                            for i in 0..<n {
                                var ref = [Double](), tol = [Double](), got = [Float]()
                                for r in 0..<rows {
                                    let terms = (0..<cols).map { dec[r][$0] * Double(x[i * cols + $0]) }
                                    ref.append(terms.reduce(0, +))
                                    let extra = minMagnitude(t, w, row: r, cols: cols) { abs(Double(x[i * cols + $0])) }
                                    tol.append(summationBound(cols + 2, terms.reduce(0) { $0 + abs($1) } + extra))
                                    got.append(y[i * ldy + r])
                                }
                                assertClose(got, ref, tolerance: tol, "\(path) \(t) rows=\(rows) cols=\(cols) n=\(n) i=\(i)")
                                if n > 1 { for r in rows..<ldy { XCTAssertTrue(y[i * ldy + r].isNaN, "padding untouched") } }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The double-precision reference of the int8-activation product of row `r` of `w` with activation
    /// row `i` of `xq`, and its tolerance.
    private func q8actReference(_ t: ElementType, _ w: [UInt8], _ dec: [[Double]], _ xq: [kvk_block_q8_act],
                                row r: Int, activation i: Int, cols: Int) -> (value: Double, tolerance: Double) {
        let nb = cols / 32
        var sum = 0.0, mag = 0.0
        for b in 0..<nb {
            let a = xq[i * nb + b]
            let qa = withUnsafeBytes(of: a.qs) { Array($0.bindMemory(to: Int8.self)) }
            for j in 0..<32 {
                let term = dec[r][b * 32 + j] * Double(a.d) * Double(qa[j])
                sum += term
                mag += abs(term)
            }
        }
        mag += minMagnitude(t, w, row: r, cols: cols) { j in
            let a = xq[i * nb + j / 32]
            let q = withUnsafeBytes(of: a.qs) { $0.load(fromByteOffset: j % 32, as: Int8.self) }
            return abs(Double(a.d) * Double(q))
        }
        // block scales are products of two f32/f16 values: a few extra roundings per block
        return (sum, summationBound(nb * 4 + 2, mag) + 4 * f32Unit * mag)
    }

    private func quantizedActivations(_ n: Int, cols: Int, rng: inout SeededRNG) -> [kvk_block_q8_act] {
        let x = rng.floats(n * cols, in: -4...4)
        var xq = [kvk_block_q8_act](repeating: kvk_block_q8_act(), count: n * cols / 32)
        kvk_quantize_act(x, &xq, n * cols)
        return xq
    }

    func testQ8ActProducts() {
        var rng = SeededRNG(seed: 42)
        forEachKernelPath { path in
            for t in [ElementType.q8_0, .q4_0, .q4_1] {
                for cols in [32, 96, 576, 1536] {
                    for rows in [0, 1, 3, 4, 9] {
                        let w = makeMatrix(t, rows: rows, cols: cols, rng: &rng)
                        let dec = decodedRows(t, w, rows: rows, cols: cols)
                        for n in [1, 2, 3, 7] {
                            let xq = quantizedActivations(n, cols: cols, rng: &rng)
                            let ldy = rows + 1
                            var y = [Float](repeating: .nan, count: n * ldy)
                            w.withUnsafeBytes { p in
                                if n == 1 { kvk_matvec_q8act(t.kernelType, p.baseAddress!, rows, cols, xq, &y) }
                                else { kvk_matmul_q8act(t.kernelType, p.baseAddress!, rows, cols, xq, n, &y, ldy) }
                            }
                            for i in 0..<n {
                                let ref = (0..<rows).map { q8actReference(t, w, dec, xq, row: $0, activation: i, cols: cols) }
                                assertClose(Array(y[(i * ldy)..<(i * ldy + rows)]), ref.map(\.value), tolerance: ref.map(\.tolerance),
                                            "\(path) q8act \(t) rows=\(rows) cols=\(cols) n=\(n) i=\(i)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Q4_1 and Q8_0 weights in kvk_pack_rows4's four-row layout: whole matrices and slices starting at a
    /// group (one ending at the matrix's end, with the unpacked tail rows), against the same reference.
    func testQ8ActProductsOnPackedRows() {
        var rng = SeededRNG(seed: 43)
        let q4_0 = makeMatrix(.q4_0, rows: 4, cols: 32, rng: &rng)
        var other = [UInt8](repeating: 7, count: q4_0.count)
        XCTAssertEqual(kvk_pack_rows4(KVK_Q4_0, q4_0, 4, 32, &other), 0, "Q4_0 has no packed layout")
        XCTAssertEqual(other, [UInt8](repeating: 7, count: q4_0.count), "nothing written for another type")
        forEachKernelPath { path in
            for t in [ElementType.q4_1, .q8_0] {
                for cols in [0, 32, 96, 576] {
                    for rows in [0, 1, 4, 9, 16] {
                        let w = makeMatrix(t, rows: rows, cols: cols, rng: &rng)
                        let dec = decodedRows(t, w, rows: rows, cols: cols)
                        var packed = [UInt8](repeating: 0, count: w.count)
                        XCTAssertEqual(kvk_pack_rows4(t.kernelType, w, rows, cols, &packed), 1)
                        if rows >= 4 && cols > 0 { XCTAssertNotEqual(packed, w, "groups are re-laid") }
                        let rb = t.byteCount(elements: cols)
                        for (r0, r1) in [(0, rows), (4, rows), (4, 8)] where r0 <= r1 && r1 <= rows {
                            for n in [1, 2, 3, 4, 7] {
                                let xq = quantizedActivations(n, cols: cols, rng: &rng)
                                let ldy = r1 - r0 + 2
                                var y = [Float](repeating: .nan, count: n * ldy)
                                packed.withUnsafeBytes { p in
                                    kvk_matmul_q8act_rows4(t.kernelType, p.baseAddress! + r0 * rb, r1 - r0, cols, xq, n, &y, ldy)
                                }
                                for i in 0..<n {
                                    let ref = (r0..<r1).map { q8actReference(t, w, dec, xq, row: $0, activation: i, cols: cols) }
                                    assertClose(Array(y[(i * ldy)..<(i * ldy + r1 - r0)]), ref.map(\.value),
                                                tolerance: ref.map(\.tolerance),
                                                "\(path) rows4 \(t) rows=\(r0)..<\(r1) of \(rows) cols=\(cols) n=\(n) i=\(i)")
                                    for r in (r1 - r0)..<ldy { XCTAssertTrue(y[i * ldy + r].isNaN, "padding untouched") }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
