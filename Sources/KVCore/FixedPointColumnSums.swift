import Foundation

/// Attention column sums gathered from parallel work items, deterministically.
///
/// Each work item adds its f32 partial sums, rounded to 64-bit fixed point, under a per-KV-head
/// lock. Integer addition is associative, so the totals are the same whatever order the items
/// finish in and however many threads ran them; only each partial's rounding (about `2^-40` of
/// the largest possible total) is lost.
final class FixedPointColumnSums: @unchecked Sendable {
    /// KV heads.
    let heads: Int
    /// Columns per head.
    let columns: Int
    /// Fixed-point units per 1.0 (a power of two).
    let scale: Double
    private let sums: UnsafeMutablePointer<Int64>
    private let locks: [NSLock]

    /// - Parameter bound: an upper bound on any column's total (for softmax probabilities: the
    ///   number of query rows summed); the scale is the largest power of two that keeps
    ///   `bound x scale` below `2^62`.
    init(heads: Int, columns: Int, bound: Int) {
        precondition(bound >= 0 && bound < 1 << 40, "column-sum bound \(bound) out of range")
        self.heads = heads
        self.columns = columns
        let bits = Int.bitWidth - (bound + 1).leadingZeroBitCount  // bound + 1 <= 2^bits
        scale = Double(sign: .plus, exponent: 62 - bits, significand: 1)
        sums = .allocate(capacity: max(heads * columns, 1))
        sums.initialize(repeating: 0, count: max(heads * columns, 1))
        locks = (0..<heads).map { _ in NSLock() }
    }

    deinit { sums.deallocate() }

    /// Adds `count` partial sums to head `head`'s columns `0..<count`.
    func add(head: Int, _ partial: UnsafePointer<Float>, count: Int) {
        precondition(count <= columns)
        let row = sums + head * columns
        let s = scale
        locks[head].lock()
        for j in 0..<count { row[j] &+= Int64((Double(partial[j]) * s).rounded()) }
        locks[head].unlock()
    }

    /// Head `head`, column `j` of the totals.
    func value(head: Int, column j: Int) -> Float { Float(Double(sums[head * columns + j]) / scale) }
}
