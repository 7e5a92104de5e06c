/// Helpers that turn scores into kept rows, shared by every selector.
///
/// **Tie-break rule** (deterministic, documented): rows are ranked by score, descending; equal scores
/// rank the row with the **larger position first** (favouring recency). NaN scores rank last.
/// Reference implementations (PyTorch `topk`) leave ties unspecified, so exact ties may resolve
/// differently there.
public enum KVSelection {
    /// `true` if row `a` ranks before row `b`.
    @inlinable
    static func ranksBefore(_ sa: Float, _ pa: Int32, _ sb: Float, _ pb: Int32) -> Bool {
        let na = sa.isNaN, nb = sb.isNaN
        if na != nb { return nb }
        if !na && sa != sb { return sa > sb }
        return pa > pb
    }

    /// Row indices in rank order (best first) under the documented tie-break rule.
    public static func ranking(scores: [Float], positions: [Int32]) -> [Int] {
        precondition(scores.count == positions.count, "one score per row")
        return scores.indices.sorted { ranksBefore(scores[$0], positions[$0], scores[$1], positions[$1]) }
    }

    /// The `k` best rows (ascending row order), or nil when `k >= scores.count` (keep all).
    ///
    /// - Complexity: O(n x (n - k)) when only a few rows go (n - k <= 8, the decode-time case),
    ///   O(n log n) otherwise.
    public static func topK(scores: [Float], positions: [Int32], k: Int) -> [Int]? {
        precondition(k >= 0, "negative keep count")
        precondition(scores.count == positions.count, "one score per row")
        let n = scores.count
        if k >= n { return nil }
        if n - k <= 8 {
            // Drop the worst-ranked rows one linear scan at a time.
            var dropped = [Bool](repeating: false, count: n)
            for _ in 0..<(n - k) {
                var worst = -1
                for j in 0..<n where !dropped[j] {
                    if worst < 0 || ranksBefore(scores[worst], positions[worst], scores[j], positions[j]) { worst = j }
                }
                dropped[worst] = true
            }
            return (0..<n).filter { !dropped[$0] }
        }
        return Array(ranking(scores: scores, positions: positions).prefix(k)).sorted()
    }

    /// Per-head top-k with per-head keep counts.
    public static func topK(_ scores: KVScores, keep: [Int], context: KVLayerContext) -> [[Int]?] {
        precondition(keep.count == scores.heads.count, "one keep count per head")
        return scores.heads.indices.map { m in
            topK(scores: scores.heads[m], positions: context.positions(head: m), k: keep[m])
        }
    }

    /// Evicts every row not listed (nil keeps the whole head).
    public static func apply(_ keep: [[Int]?], context: KVLayerContext) {
        for (m, rows) in keep.enumerated() {
            if let rows { context.cache.retain(layer: context.layer, head: m, indices: rows) }
        }
    }
}
