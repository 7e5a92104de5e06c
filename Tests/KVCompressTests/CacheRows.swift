import KVCore
import XCTest
@testable import KVCompress

/// Every head's entries of layer 0 as f32 rows (keys and values read back from the cache, in
/// head-row order), in buffers that one-part views can point into: the reference that attention
/// over a cache's quantized and interleaved parts is compared with.
final class CacheRows {
    let keys: [UnsafeMutablePointer<Float>], values: [UnsafeMutablePointer<Float>]
    let positions: [UnsafeMutablePointer<Int32>]
    let counts: [Int]
    let d: Int

    init(_ cache: KVCache) {
        d = cache.headDim
        counts = (0..<cache.kvHeads).map { cache.count(layer: 0, head: $0) }
        keys = counts.map { .allocate(capacity: max($0, 1) * cache.headDim) }
        values = counts.map { .allocate(capacity: max($0, 1) * cache.headDim) }
        positions = counts.map { .allocate(capacity: max($0, 1)) }
        for m in counts.indices {
            for j in 0..<counts[m] {
                (keys[m] + j * d).update(from: cache.key(layer: 0, head: m, row: j), count: d)
                (values[m] + j * d).update(from: cache.value(layer: 0, head: m, row: j), count: d)
            }
            positions[m].update(from: cache.positions(layer: 0, head: m), count: counts[m])
        }
    }

    deinit { (keys + values).forEach { $0.deallocate() }; positions.forEach { $0.deallocate() } }

    /// One f32 view per head.
    func withViews(_ body: ([KVHeadView]) -> Void) {
        body(counts.indices.map { m in
            KVHeadView(keys: keys[m], values: values[m], positions: positions[m], count: counts[m], keyType: .f32,
                       valueType: .f32, keyStride: 4 * d, valueStride: 4 * d)
        })
    }
}

/// Asserts that `a` and `b` differ by at most `tol` times the larger of 1 and `b`'s largest magnitude.
func assertAllClose(_ a: [Float], _ b: [Float], _ tol: Float, _ what: String, file: StaticString = #filePath,
                    line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    let scale = max(b.map(abs).max() ?? 1, 1)  // outputs and probabilities are at most 1 here
    let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
    XCTAssertLessThanOrEqual(worst, tol * scale, "\(what): max difference \(worst)", file: file, line: line)
}

extension CacheRows {
    /// Decode, prefill (with each of `windows`) and observation over the cache's layer-0 parts
    /// against the same entries as these f32 rows: outputs, column sums and probabilities within
    /// `tol` (relative to the larger of 1 and the reference's magnitude). Random queries from
    /// `seed`; the prefill and observation queries sit at `positions`.
    func assertAttentionMatches(_ cache: KVCache, heads: Int, positions: [Int32], tol: Float, seed: UInt64,
                                windows: [[KVAttentionWindow?]?] = [nil], file: StaticString = #filePath, line: UInt = #line) {
        let parts = cache.headParts(layer: 0)
        let kvHeads = parts.count
        var rng = SplitMix64(seed: seed)
        let q = (0..<(heads * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let stride = counts.max()!
        var a = [Float](repeating: 0, count: heads * d), b = a
        var sumsA = [Float](repeating: 0, count: kvHeads * stride), sumsB = sumsA
        Attention.decode(query: q, heads: heads, headDim: d, parts: parts, output: &a, columnSums: &sumsA, columnSumStride: stride)
        withViews { views in
            Attention.decode(query: q, heads: heads, headDim: d, kv: views, output: &b, columnSums: &sumsB, columnSumStride: stride)
        }
        assertAllClose(a, b, tol, "decode", file: file, line: line)
        assertAllClose(sumsA, sumsB, tol, "decode column sums", file: file, line: line)
        let n = positions.count
        let qs = (0..<(n * heads * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        for w in windows {
            var pa = [Float](repeating: 0, count: n * heads * d), pb = pa
            Attention.prefill(queries: qs, queryCount: n, queryTokenStride: heads * d, queryPositions: positions, heads: heads,
                              headDim: d, parts: parts, output: &pa, columnSums: &sumsA, columnSumStride: stride, windows: w)
            withViews { views in
                Attention.prefill(queries: qs, queryCount: n, queryTokenStride: heads * d, queryPositions: positions,
                                  heads: heads, headDim: d, parts: views.map { [$0] }, output: &pb, columnSums: &sumsB,
                                  columnSumStride: stride, windows: w)
            }
            assertAllClose(pa, pb, tol, "prefill, windows \(w.map { "\($0)" } ?? "none")", file: file, line: line)
            assertAllClose(sumsA, sumsB, max(tol, 1e-4), "prefill column sums", file: file, line: line)
        }
        var oa = [Float](repeating: 0, count: heads * n * stride), ob = oa
        Attention.observe(queries: qs, queryCount: n, queryTokenStride: heads * d, queryPositions: positions,
                          heads: heads, headDim: d, parts: parts, output: &oa, outputKeyStride: stride)
        withViews { views in
            Attention.observe(queries: qs, queryCount: n, queryTokenStride: heads * d, queryPositions: positions,
                              heads: heads, headDim: d, kv: views, output: &ob, outputKeyStride: stride)
        }
        assertAllClose(oa, ob, tol, "observe", file: file, line: line)
    }
}
