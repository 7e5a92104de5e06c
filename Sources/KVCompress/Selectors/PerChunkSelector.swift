/// Keeps the same fraction of every span of `chunkLength` consecutive rows of a head: each span's
/// top entries by score, so what is kept covers the whole prompt evenly (kvpress `ChunkPress`).
///
/// With a ratio budget a span of `n` rows keeps `max(1, Int(n * (1 - ratio)))`, as kvpress; with a
/// `.tokens` or `.bytes` budget of `N` entries for a head of `L` rows, `max(1, Int(N * n / L))`.
public struct PerChunkSelector: KVSelector {
    /// The budget.
    public let budget: KVBudget
    /// Rows per span.
    public let chunkLength: Int

    /// Creates the selector.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or `chunkLength < 1`.
    public init(budget: KVBudget, chunkLength: Int = 1024) throws(KVError) {
        guard chunkLength >= 1 else { throw .invalidParameter(name: "chunkLength", value: "\(chunkLength)", expected: ">= 1") }
        self.budget = try budget.validated()
        self.chunkLength = chunkLength
    }

    /// Per-span top-k in every head.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        var keep: [[Int]?] = []
        for (m, n) in context.counts.enumerated() {
            let total = budget.keptCount(length: n, cache: context.cache)
            guard total < n else { keep.append(nil); continue }
            let positions = context.positions(head: m)
            var rows: [Int] = []
            for start in stride(from: 0, to: n, by: chunkLength) {
                let span = start..<min(start + chunkLength, n)
                let k: Int
                if case .compressionRatio(let r) = budget {
                    k = KVBudget.keptCount(length: span.count, compressionRatio: r)
                } else {
                    k = max(1, Int(Double(total) * Double(span.count) / Double(n)))
                }
                let chosen = try KVSelection.topK(scores: Array(scores.heads[m][span]), positions: Array(positions[span]), k: k)
                rows += chosen.map { $0.map { $0 + start } } ?? Array(span)
            }
            keep.append(rows)
        }
        return keep
    }

    /// The budget's fixed capacity (`.tokens`, `.bytes`).
    public func decodeCapacity(context: KVLayerContext) -> Int? { budget.fixedCapacity(cache: context.cache) }
}
