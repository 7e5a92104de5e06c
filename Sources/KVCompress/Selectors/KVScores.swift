/// Scores of one layer's cache entries: one f32 per row of every KV head (higher = keep), aligned
/// with the head's current rows (ascending positions).
public struct KVScores: Sendable, Equatable {
    /// `heads[m][j]`: the score of row `j` of KV head `m`.
    public var heads: [[Float]]

    /// Creates scores from per-head arrays.
    public init(heads: [[Float]]) { self.heads = heads }

    /// The scores of KV head `m`.
    public subscript(head: Int) -> [Float] {
        get { heads[head] }
        set { heads[head] = newValue }
    }

    /// The largest finite score over every head (nil when there is none).
    public var maximum: Float? {
        var best: Float?
        for h in heads { for s in h where s.isFinite { best = best.map { max($0, s) } ?? s } }
        return best
    }
}
