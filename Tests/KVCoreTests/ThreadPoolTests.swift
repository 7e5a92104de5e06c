import Foundation
import XCTest
@testable import KVCore

final class ThreadPoolTests: XCTestCase {
    /// Every index runs exactly once, for many sizes and repeated calls.
    func testEveryIndexExactlyOnce() {
        for threads in [1, 2, 3, 4] {
            let pool = ThreadPool(threads: threads)
            XCTAssertEqual(pool.threadCount, threads)
            for count in [0, 1, 2, 3, 7, 8, 63, 64, 1000, 4099] {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                hits.initialize(repeating: 0, count: max(count, 1))
                defer { hits.deallocate() }
                pool.parallelFor(count) { i in hits[i] += 1 }
                for i in 0..<count where hits[i] != 1 {
                    XCTFail("threads \(threads) count \(count): index \(i) ran \(hits[i]) times")
                    break
                }
            }
        }
    }

    /// `parallelRanges` hands out non-empty ranges that cover every index once; with more than one
    /// thread the first claim is the longest (guided: `count / (2 x threads)`) and the ranges shrink
    /// to single indices at the end.
    func testRangesCoverOnceAndShrink() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool(threads: threads)
            for count in [0, 1, 2, 5, 64, 1000, 3072] {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                hits.initialize(repeating: 0, count: max(count, 1))
                defer { hits.deallocate() }
                let lock = NSLock()
                var ranges: [Range<Int>] = []
                pool.parallelRanges(count) { r in
                    for i in r { hits[i] += 1 }
                    lock.withLock { ranges.append(r) }
                }
                for i in 0..<count where hits[i] != 1 {
                    XCTFail("threads \(threads) count \(count): index \(i) ran \(hits[i]) times")
                    break
                }
                XCTAssertFalse(ranges.contains { $0.isEmpty }, "threads \(threads) count \(count): an empty range")
                guard count >= 2 else { continue }
                if threads == 1 {
                    XCTAssertEqual(ranges, [0..<count], "one thread runs the whole loop as one range")
                } else {
                    let first = ranges.min { $0.lowerBound < $1.lowerBound }!
                    XCTAssertEqual(first, 0..<max(1, count / (2 * threads)), "threads \(threads) count \(count)")
                    let last = ranges.max { $0.lowerBound < $1.lowerBound }!
                    XCTAssertEqual(last.count, 1, "threads \(threads) count \(count): the last claim is one index")
                }
            }
        }
    }

    /// Thousands of back-to-back regions (the decode pattern), checking results every time.
    func testManyRepeatedCalls() {
        let pool = ThreadPool(threads: 3)
        let n = 37
        let out = UnsafeMutablePointer<Int>.allocate(capacity: n)
        defer { out.deallocate() }
        for round in 0..<5000 {
            out.initialize(repeating: -1, count: n)
            pool.parallelFor(n) { i in out[i] = i &* 31 &+ round }
            for i in 0..<n where out[i] != i &* 31 &+ round {
                XCTFail("round \(round): index \(i) wrong")
                return
            }
        }
    }

    /// Regions separated by pauses long enough for the workers to park still complete.
    func testWakeAfterParking() {
        let pool = ThreadPool(threads: 2)
        for _ in 0..<3 {
            Thread.sleep(forTimeInterval: 0.05)
            let hits = UnsafeMutablePointer<Int>.allocate(capacity: 100)
            hits.initialize(repeating: 0, count: 100)
            pool.parallelFor(100) { i in hits[i] += 1 }
            XCTAssertEqual((0..<100).reduce(0) { $0 + hits[$1] }, 100)
            hits.deallocate()
        }
    }

    /// A parallelFor inside a body runs serially on that thread and still covers every index.
    func testNestedCallsRunSerially() {
        let pool = ThreadPool(threads: 2)
        let outer = 8, inner = 16
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: outer * inner)
        hits.initialize(repeating: 0, count: outer * inner)
        defer { hits.deallocate() }
        pool.parallelFor(outer) { i in
            pool.parallelFor(inner) { j in hits[i * inner + j] += 1 }
            ThreadPool.shared.parallelFor(1) { _ in }
        }
        for k in 0..<(outer * inner) { XCTAssertEqual(hits[k], 1) }
    }

    /// Two threads using one pool at once both get complete results (the second runs serially).
    func testConcurrentCallers() {
        let pool = ThreadPool(threads: 2)
        let n = 512
        let a = UnsafeMutablePointer<Int>.allocate(capacity: n), b = UnsafeMutablePointer<Int>.allocate(capacity: n)
        a.initialize(repeating: 0, count: n)
        b.initialize(repeating: 0, count: n)
        defer { a.deallocate(); b.deallocate() }
        let group = DispatchGroup()
        let pa = UnsafeSendable(a), pb = UnsafeSendable(b)
        DispatchQueue.global().async(group: group) {
            for _ in 0..<200 { pool.parallelFor(n) { i in pa.value[i] += 1 } }
        }
        DispatchQueue.global().async(group: group) {
            for _ in 0..<200 { pool.parallelFor(n) { i in pb.value[i] += 1 } }
        }
        group.wait()
        for i in 0..<n {
            XCTAssertEqual(a[i], 200)
            XCTAssertEqual(b[i], 200)
        }
    }

    /// Pools can be created and dropped repeatedly (workers stop).
    func testCreateAndDrop() {
        for _ in 0..<20 {
            let pool = ThreadPool(threads: 3)
            var total = 0
            let sum = UnsafeMutablePointer<Int>.allocate(capacity: 10)
            sum.initialize(repeating: 0, count: 10)
            pool.parallelFor(10) { i in sum[i] = i }
            for i in 0..<10 { total += sum[i] }
            sum.deallocate()
            XCTAssertEqual(total, 45)
        }
        XCTAssertGreaterThanOrEqual(ThreadPool.shared.threadCount, 1)
    }
}

/// Moves a raw pointer into a @Sendable closure in tests.
private struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
