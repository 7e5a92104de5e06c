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

    /// Checks that there is one score per entry of every KV head of the context's layer.
    /// - Throws: `KVError.shapeMismatch` naming the scorer, the head and both counts.
    public func check(against context: KVLayerContext, scorer: String) throws(KVError) {
        guard heads.count == context.shape.kvHeads else {
            throw .shapeMismatch("\(scorer) returned scores for \(heads.count) KV heads in layer \(context.layer); "
                + "the model has \(context.shape.kvHeads): return one score array per KV head")
        }
        for m in heads.indices where heads[m].count != context.count(head: m) {
            throw .shapeMismatch("\(scorer) returned \(heads[m].count) scores for KV head \(m) of layer \(context.layer), "
                + "which holds \(context.count(head: m)) entries: return one score per cache entry")
        }
    }

    /// The largest finite score over every head (nil when there is none).
    public var maximum: Float? {
        var best: Float?
        for h in heads { for s in h where s.isFinite { best = best.map { max($0, s) } ?? s } }
        return best
    }
}
