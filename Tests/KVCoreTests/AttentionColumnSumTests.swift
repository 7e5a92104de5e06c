import CKVKernels
import XCTest
@testable import KVCore

/// `Attention.prefill`'s attention column sums against a naive double-precision reference:
/// softmax(q.k * scale) over the rows each query may see, summed over the queries and over the query
/// heads of each KV head's group.
final class AttentionColumnSumTests: XCTestCase {
    typealias Head = AttentionTests.Head

    struct Case: CustomStringConvertible {
        var heads: Int
        var kvHeads: Int
        var d: Int
        var counts: [Int]
        var queries: Int
        var type: ElementType
        /// Queries at the positions of a plain prompt (0, 1, 2, ...) instead of spread over the rows.
        var prompt: Bool
        var description: String { "\(heads)/\(kvHeads) heads d=\(d) rows \(counts) queries \(queries) \(type)\(prompt ? " prompt" : "")" }
    }

    static let cases: [Case] = [
        Case(heads: 9, kvHeads: 3, d: 64, counts: [301, 301, 301], queries: 301, type: .f32, prompt: true),
        Case(heads: 8, kvHeads: 2, d: 128, counts: [257, 130], queries: 257, type: .f16, prompt: true),
        Case(heads: 4, kvHeads: 4, d: 64, counts: [0, 5, 33, 1], queries: 37, type: .f32, prompt: false),
        Case(heads: 6, kvHeads: 1, d: 128, counts: [129], queries: 45, type: .f16, prompt: false),
        Case(heads: 4, kvHeads: 2, d: 64, counts: [131, 64], queries: 19, type: .q8_0, prompt: false),
        Case(heads: 2, kvHeads: 1, d: 64, counts: [17], queries: 1, type: .f32, prompt: false),
    ]

    /// Runs prefill with column sums; returns (output, column sums with stride `maxRows + 1`).
    func run(_ c: Case, heads: [Head], q: [Float], qPos: [Int32], pool: ThreadPool?,
             columnSums: Bool = true) -> (out: [Float], sums: [Float], stride: Int) {
        let stride = (c.counts.max() ?? 0) + 1
        var out = [Float](repeating: .nan, count: c.queries * c.heads * c.d)
        var sums = [Float](repeating: -7, count: c.kvHeads * stride)
        let positions = heads.map { h -> UnsafeMutablePointer<Int32> in
            let b = UnsafeMutablePointer<Int32>.allocate(capacity: max(h.count, 1))
            b.initialize(from: h.positions, count: h.count)
            return b
        }
        defer { positions.forEach { $0.deallocate() } }
        let views = zip(heads, positions).map { $0.view($1) }
        qPos.withUnsafeBufferPointer { qp in
            sums.withUnsafeMutableBufferPointer { s in
                Attention.prefill(queries: q, queryCount: c.queries, queryTokenStride: c.heads * c.d,
                                  queryPositions: qp.baseAddress!, heads: c.heads, headDim: c.d, kv: views,
                                  scale: 1 / Float(c.d).squareRoot(), output: &out,
                                  columnSums: columnSums ? s.baseAddress! : nil, columnSumStride: stride, pool: pool)
            }
        }
        return (out, sums, stride)
    }

    func testColumnSumsMatchNaiveReference() throws {
        var rng = SystemRandomNumberGenerator()
        let pool = ThreadPool(threads: 2)
        for c in Self.cases {
            let heads = (0..<c.kvHeads).map { m in
                Head(count: c.counts[m], d: c.d, type: c.type, rng: &rng, gapEvery: c.prompt ? 0 : (m == 0 ? 5 : 0))
            }
            let maxPos = heads.compactMap { $0.positions.last }.max() ?? 0
            let qPos = (0..<c.queries).map { c.prompt ? Int32($0) : Int32(-1 + Int(maxPos + 3) * ($0 + 1) / c.queries) }
            let stride = c.heads * c.d
            let q = (0..<(c.queries * stride)).map { _ in Float.random(in: -2...2, using: &rng) }
            let scale = 1 / Float(c.d).squareRoot()
            let g = c.heads / c.kvHeads
            var ref = heads.map { [Double](repeating: 0, count: $0.count) }
            for t in 0..<c.queries {
                for h in 0..<c.heads {
                    let base = t * stride + h * c.d
                    let p = heads[h / g].reference(q[base..<(base + c.d)], position: qPos[t], scale: scale).probs
                    for j in p.indices { ref[h / g][j] += p[j] }
                }
            }
            let tol = c.type.isBlockQuantized ? 2e-3 : 1e-4
            for scalar in [false, true] {
                kvk_set_force_scalar(scalar ? 1 : 0)
                defer { kvk_set_force_scalar(0) }
                let one = run(c, heads: heads, q: q, qPos: qPos, pool: nil)
                let two = run(c, heads: heads, q: q, qPos: qPos, pool: pool)
                let plain = run(c, heads: heads, q: q, qPos: qPos, pool: pool, columnSums: false)
                let label = "\(c) \(scalar ? "scalar" : "simd")"
                // Same output with or without column sums; same sums whatever the thread count.
                XCTAssertEqual(one.out, plain.out, "output \(label)")
                XCTAssertEqual(one.sums, two.sums, "1 vs 2 threads \(label)")
                for m in 0..<c.kvHeads {
                    for j in 0..<c.counts[m] {
                        let got = Double(one.sums[m * one.stride + j])
                        XCTAssertEqual(got, ref[m][j], accuracy: tol * (1 + ref[m][j]), "\(label) head \(m) row \(j)")
                    }
                    // Past a head's rows nothing is written.
                    for j in c.counts[m]..<one.stride { XCTAssertEqual(one.sums[m * one.stride + j], -7, "\(label) head \(m) row \(j)") }
                    // Every query that sees a row of the head adds 1 per query head of the group.
                    let seeing = qPos.filter { p in heads[m].positions.first.map { $0 <= p } ?? false }.count
                    let total = (0..<c.counts[m]).reduce(0.0) { $0 + Double(one.sums[m * one.stride + $1]) }
                    XCTAssertEqual(total, Double(seeing * g), accuracy: 1e-3 * Double(max(seeing * g, 1)), "\(label) head \(m) total")
                }
            }
        }
    }

    /// `Attention.decode`'s column sums (one query token over every row): heads longer than the
    /// decode chunk (several partial softmaxes merged), a single row and an empty head.
    func testDecodeColumnSumsMatchNaiveReference() {
        var rng = SystemRandomNumberGenerator()
        let pool = ThreadPool(threads: 2)
        for type in [ElementType.f32, .f16, .q8_0] {
            let (nHeads, kvHeads, d) = (8, 4, 64)
            let counts = [2 * Attention.decodeChunk + 300, 1, Attention.decodeChunk + 6, 0]
            let heads = counts.enumerated().map { m, n in Head(count: n, d: d, type: type, rng: &rng, gapEvery: m == 0 ? 7 : 0) }
            let q = (0..<(nHeads * d)).map { _ in Float.random(in: -2...2, using: &rng) }
            let scale = 1 / Float(d).squareRoot()
            let g = nHeads / kvHeads
            var ref = heads.map { [Double](repeating: 0, count: $0.count) }
            for h in 0..<nHeads {
                let p = heads[h / g].reference(q[(h * d)..<(h * d + d)], position: .max, scale: scale).probs
                for j in p.indices { ref[h / g][j] += p[j] }
            }
            let stride = counts.max()! + 1
            let positions = heads.map { h -> UnsafeMutablePointer<Int32> in
                let b = UnsafeMutablePointer<Int32>.allocate(capacity: max(h.count, 1))
                b.initialize(from: h.positions, count: h.count)
                return b
            }
            defer { positions.forEach { $0.deallocate() } }
            defer { withExtendedLifetime(heads) {} }  // the views below point into the heads' rows
            let views = zip(heads, positions).map { $0.view($1) }
            func run(_ pool: ThreadPool?, sums: Bool) -> (out: [Float], sums: [Float]) {
                var out = [Float](repeating: .nan, count: nHeads * d)
                var s = [Float](repeating: -7, count: kvHeads * stride)
                s.withUnsafeMutableBufferPointer { sp in
                    Attention.decode(query: q, heads: nHeads, headDim: d, kv: views, scale: scale, output: &out,
                                     columnSums: sums ? sp.baseAddress! : nil, columnSumStride: stride, pool: pool)
                }
                return (out, s)
            }
            let one = run(nil, sums: true), two = run(pool, sums: true), plain = run(pool, sums: false)
            XCTAssertEqual(one.out, plain.out, "\(type): output with and without column sums")
            XCTAssertEqual(one.sums, two.sums, "\(type): 1 vs 2 threads")
            let tol = type.isBlockQuantized ? 2e-3 : 1e-4
            for m in 0..<kvHeads {
                for j in 0..<counts[m] {
                    XCTAssertEqual(Double(one.sums[m * stride + j]), ref[m][j], accuracy: tol * (1 + ref[m][j]),
                                   "\(type) head \(m) row \(j)")
                }
                for j in counts[m]..<stride { XCTAssertEqual(one.sums[m * stride + j], -7, "\(type) head \(m) row \(j)") }
                let total = (0..<counts[m]).reduce(0.0) { $0 + Double(one.sums[m * stride + $1]) }
                XCTAssertEqual(total, counts[m] > 0 ? Double(g) : 0, accuracy: 1e-4, "\(type) head \(m) total")
            }
        }
    }

    func testNoQueriesGiveZeroSums() {
        var rng = SystemRandomNumberGenerator()
        let c = Case(heads: 2, kvHeads: 2, d: 64, counts: [3, 5], queries: 0, type: .f32, prompt: true)
        let heads = c.counts.map { Head(count: $0, d: c.d, type: c.type, rng: &rng, gapEvery: 0) }
        let r = run(c, heads: heads, q: [0], qPos: [0], pool: nil)
        XCTAssertEqual(r.sums, [0, 0, 0, -7, -7, -7, 0, 0, 0, 0, 0, -7])
    }
}
