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
    /// - Throws: `KVError.shapeMismatch` unless there is one score per position.
    public static func ranking(scores: [Float], positions: [Int32]) throws(KVError) -> [Int] {
        try checkCounts(scores: scores, positions: positions)
        return scores.indices.sorted { ranksBefore(scores[$0], positions[$0], scores[$1], positions[$1]) }
    }

    static func checkCounts(scores: [Float], positions: [Int32]) throws(KVError) {
        guard scores.count == positions.count else {
            throw .shapeMismatch("\(scores.count) scores for \(positions.count) entries: give one score per entry")
        }
    }

    /// The `k` best rows (ascending row order), or nil when `k >= scores.count` (keep all).
    ///
    /// - Throws: `KVError.shapeMismatch` unless there is one score per position;
    ///   `.invalidParameter` for a negative `k`.
    /// - Complexity: O(n x (n - k)) when only a few rows go (n - k <= 8, the decode-time case),
    ///   O(n log n) otherwise.
    public static func topK(scores: [Float], positions: [Int32], k: Int) throws(KVError) -> [Int]? {
        guard k >= 0 else { throw .invalidParameter(name: "k", value: "\(k)", expected: ">= 0 entries to keep") }
        try checkCounts(scores: scores, positions: positions)
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
        return Array(try ranking(scores: scores, positions: positions).prefix(k)).sorted()
    }

    /// Per-head top-k with per-head keep counts.
    /// - Throws: `KVError.shapeMismatch` unless there is one keep count per head and one score per
    ///   entry of every head.
    public static func topK(_ scores: KVScores, keep: [Int], context: KVLayerContext) throws(KVError) -> [[Int]?] {
        guard keep.count == scores.heads.count else {
            throw .shapeMismatch("\(keep.count) keep counts for \(scores.heads.count) KV heads: give one per head")
        }
        var out: [[Int]?] = []
        for m in scores.heads.indices {
            out.append(try topK(scores: scores.heads[m], positions: context.positions(head: m), k: keep[m]))
        }
        return out
    }

    /// Rows chosen once for the whole layer: `choose` sees the scores summed over the layer's KV
    /// heads and its rows stay in every head, when every head holds the same positions (a first
    /// prompt); otherwise each head is chosen on its own scores. For selectors that keep the same
    /// tokens in every head (kvpress's chunk presses).
    static func sameRowsInEveryHead(_ scores: KVScores, context: KVLayerContext,
                                    _ choose: ([Float]) -> [Int]?) -> [[Int]?] {
        let counts = context.counts
        let positions = (0..<counts.count).map { context.positions(head: $0) }
        guard positions.dropFirst().allSatisfy({ $0 == positions[0] }) else {
            return counts.indices.map { choose(scores.heads[$0]) }
        }
        var summed = [Float](repeating: 0, count: counts[0])
        for head in scores.heads { for j in summed.indices { summed[j] += head[j] } }
        return Array(repeating: choose(summed), count: counts.count)
    }

    /// Evicts every row not listed (nil keeps the whole head).
    /// - Throws: `KVError.shapeMismatch` for more lists than KV heads; `.invalidParameter` for a
    ///   row index out of range or listed twice (see ``KVCache/retain(layer:head:indices:)``).
    public static func apply(_ keep: [[Int]?], context: KVLayerContext) throws(KVError) {
        guard keep.count <= context.shape.kvHeads else {
            throw .shapeMismatch("\(keep.count) kept-row lists for \(context.shape.kvHeads) KV heads: give one per head")
        }
        for (m, rows) in keep.enumerated() {
            if let rows { try context.cache.retain(layer: context.layer, head: m, indices: rows) }
        }
    }
}
