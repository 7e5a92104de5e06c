import CKVKernels
import XCTest
@testable import KVCore

/// Attention against a naive double-precision softmax(q.k * scale) v over the rows each query may
/// see (position <= query position), computed on the rows as stored (dequantized).
final class AttentionTests: XCTestCase {
    /// One ragged KV head: rows in a storage type plus ascending positions with gaps.
    final class Head {
        let type: ElementType
        let d: Int
        let positions: [Int32]
        let keys: UnsafeMutableRawPointer
        let values: UnsafeMutableRawPointer
        let storedKeys: [Float]
        let storedValues: [Float]
        var count: Int { positions.count }

        init(count: Int, d: Int, type: ElementType, rng: inout SystemRandomNumberGenerator, gapEvery: Int) {
            self.type = type
            self.d = d
            var p: [Int32] = []
            var next: Int32 = 0
            for i in 0..<count {
                if gapEvery > 0 && i % gapEvery == gapEvery - 1 { next += 3 }  // evicted entries
                p.append(next)
                next += 1
            }
            positions = p
            func make() -> (UnsafeMutableRawPointer, [Float]) {
                let raw = (0..<(count * d)).map { _ in Float.random(in: -1...1, using: &rng) }
                let ptr = UnsafeMutableRawPointer.allocate(byteCount: max(type.byteCount(elements: count * d), 1), alignment: 64)
                kvk_quantize(type.kernelType, raw, ptr, count * d)
                var back = [Float](repeating: 0, count: count * d)
                kvk_dequantize(type.kernelType, ptr, &back, count * d)
                return (ptr, back)
            }
            (keys, storedKeys) = make()
            (values, storedValues) = make()
        }

        deinit {
            keys.deallocate()
            values.deallocate()
        }

        func view(_ positions: UnsafePointer<Int32>) -> KVHeadView {
            let rb = type.byteCount(elements: d)
            return KVHeadView(keys: keys, values: values, positions: positions, count: count, keyType: type,
                              valueType: type, keyStride: rb, valueStride: rb)
        }

        /// Naive attention of one query at `position`: output and probabilities over rows.
        func reference(_ q: ArraySlice<Float>, position: Int32, scale: Float) -> (out: [Double], probs: [Double]) {
            let visible = positions.filter { $0 <= position }.count
            var probs = [Double](repeating: 0, count: count)
            var out = [Double](repeating: 0, count: d)
            guard visible > 0 else { return (out, probs) }
            let qa = Array(q)
            var logits = (0..<visible).map { j in
                (0..<d).reduce(0.0) { $0 + Double(qa[$1]) * Double(storedKeys[j * d + $1]) } * Double(scale)
            }
            let m = logits.max()!
            logits = logits.map { Foundation.exp($0 - m) }
            let sum = logits.reduce(0, +)
            for j in 0..<visible {
                probs[j] = logits[j] / sum
                for i in 0..<d { out[i] += probs[j] * Double(storedValues[j * d + i]) }
            }
            return (out, probs)
        }
    }

    /// Runs `body` on the SIMD path and on the forced scalar path, each with no pool and 2 threads.
    private func eachConfiguration(_ body: (String, ThreadPool?) throws -> Void) rethrows {
        let pool = ThreadPool(threads: 2)
        for scalar in [false, true] {
            kvk_set_force_scalar(scalar ? 1 : 0)
            defer { kvk_set_force_scalar(0) }
            try body("\(scalar ? "scalar" : "simd")/1", nil)
            try body("\(scalar ? "scalar" : "simd")/2", pool)
        }
    }

    private func tolerance(_ type: ElementType) -> Double {
        // Stored rows are the reference's input, so only arithmetic (and the SIMD paths' rounding of
        // the query for block keys) separates the two.
        type.isBlockQuantized ? 2e-3 : 2e-4
    }

    func testPrefillMatchesNaiveReference() throws {
        var rng = SystemRandomNumberGenerator()
        let cases: [(heads: Int, kvHeads: Int, d: Int, counts: [Int], queries: Int, type: ElementType)] = [
            (9, 3, 64, [130, 97, 1], 130, .f32),
            (9, 3, 64, [40, 40, 40], 17, .f16),
            (4, 4, 80, [7, 16, 0, 33], 7, .f32),
            (8, 2, 96, [50, 20], 16, .f16),
            (4, 2, 128, [33, 64], 33, .q8_0),
            (2, 1, 256, [19], 1, .f16),
        ]
        for c in cases {
            let heads = (0..<c.kvHeads).map { m in
                Head(count: c.counts[m], d: c.d, type: c.type, rng: &rng, gapEvery: m == 0 ? 5 : 0)
            }
            let maxPos = heads.compactMap { $0.positions.last }.max() ?? 0
            // Queries at ascending positions spread over (and past) the rows, so some see none.
            let qPos = (0..<c.queries).map { Int32(-1 + Int(maxPos + 3) * ($0 + 1) / c.queries) }
            let stride = c.heads * c.d
            let q = (0..<(c.queries * stride)).map { _ in Float.random(in: -1...1, using: &rng) }
            let scale = 1 / Float(c.d).squareRoot()
            let positionBuffers = heads.map { $0.positions }
            eachConfiguration { label, pool in
                var out = [Float](repeating: .nan, count: c.queries * stride)
                withViews(heads, positionBuffers) { views in
                    qPos.withUnsafeBufferPointer { qp in
                        Attention.prefill(queries: q, queryCount: c.queries, queryTokenStride: stride, queryPositions: qp.baseAddress!,
                                          heads: c.heads, headDim: c.d, kv: views, scale: scale, output: &out, pool: pool)
                    }
                }
                let g = c.heads / c.kvHeads
                for t in 0..<c.queries {
                    for h in 0..<c.heads {
                        let base = t * stride + h * c.d
                        let ref = heads[h / g].reference(q[base..<(base + c.d)], position: qPos[t], scale: scale).out
                        for i in 0..<c.d {
                            XCTAssertEqual(Double(out[base + i]), ref[i], accuracy: tolerance(c.type),
                                           "prefill \(label) \(c) t=\(t) h=\(h) i=\(i)")
                        }
                    }
                }
            }
        }
    }

    func testDecodeOverRaggedHeads() throws {
        var rng = SystemRandomNumberGenerator()
        for type in [ElementType.f32, .f16, .q8_0] {
            // Longer than the 1024-row split (merged partial softmaxes); 27 items in all, so that
            // threads claim runs of several items (4 on one thread, 2 on two) and a shorter last run.
            let counts = [13000, 1, 0, 11500]
            let heads = counts.map { Head(count: $0, d: 64, type: type, rng: &rng, gapEvery: 7) }
            let nHeads = 8
            let q = (0..<(nHeads * 64)).map { _ in Float.random(in: -2...2, using: &rng) }
            let scale: Float = 0.125
            eachConfiguration { label, pool in
                var out = [Float](repeating: .nan, count: nHeads * 64)
                withViews(heads, heads.map(\.positions)) { views in
                    Attention.decode(query: q, heads: nHeads, headDim: 64, kv: views, scale: scale, output: &out, pool: pool)
                }
                for h in 0..<nHeads {
                    let ref = heads[h / 2].reference(q[(h * 64)..<(h * 64 + 64)], position: .max, scale: scale).out
                    for i in 0..<64 {
                        XCTAssertEqual(Double(out[h * 64 + i]), ref[i], accuracy: tolerance(type), "decode \(label) \(type) h=\(h)")
                    }
                }
            }
        }
    }

    func testObserveProbabilities() throws {
        var rng = SystemRandomNumberGenerator()
        let heads = [Head(count: 70, d: 64, type: .f16, rng: &rng, gapEvery: 4), Head(count: 33, d: 64, type: .f16, rng: &rng, gapEvery: 0)]
        let nq = 5
        let qPos: [Int32] = [0, 10, 30, 60, 200]
        let q = (0..<(nq * 4 * 64)).map { _ in Float.random(in: -1...1, using: &rng) }
        let keyStride = 80
        eachConfiguration { label, pool in
            var out = [Float](repeating: -7, count: 4 * nq * keyStride)
            withViews(heads, heads.map(\.positions)) { views in
                qPos.withUnsafeBufferPointer { qp in
                    Attention.observe(queries: q, queryCount: nq, queryTokenStride: 4 * 64, queryPositions: qp.baseAddress!,
                                      heads: 4, headDim: 64, kv: views, scale: 0.125, output: &out,
                                      outputKeyStride: keyStride, pool: pool)
                }
            }
            for h in 0..<4 {
                let head = heads[h / 2]
                for t in 0..<nq {
                    let row = Array(out[((h * nq + t) * keyStride)..<((h * nq + t) * keyStride + head.count)])
                    let ref = head.reference(q[(t * 256 + h * 64)..<(t * 256 + h * 64 + 64)], position: qPos[t], scale: 0.125).probs
                    for j in 0..<head.count {
                        if head.positions[j] > qPos[t] { XCTAssertEqual(row[j], 0, "masked entry \(label)") }
                        XCTAssertEqual(Double(row[j]), ref[j], accuracy: 1e-5, "observe \(label) h=\(h) t=\(t) j=\(j)")
                    }
                    let visible = head.positions.contains { $0 <= qPos[t] }
                    XCTAssertEqual(row.reduce(0, +), visible ? 1 : 0, accuracy: 1e-4)
                    // Entries past the head's rows are not written.
                    XCTAssertEqual(out[(h * nq + t) * keyStride + keyStride - 1], -7)
                }
            }
        }
    }

    private func withViews(_ heads: [Head], _ positions: [[Int32]], _ body: ([KVHeadView]) throws -> Void) rethrows {
        // Positions must outlive the views: copy them into buffers kept alive for the call.
        let buffers = positions.map { p -> UnsafeMutablePointer<Int32> in
            let b = UnsafeMutablePointer<Int32>.allocate(capacity: max(p.count, 1))
            b.initialize(from: p, count: p.count)
            return b
        }
        defer { buffers.forEach { $0.deallocate() } }
        try body(zip(heads, buffers).map { $0.view($1) })
    }
}
