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
