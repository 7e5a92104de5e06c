import CKVKernels

/// Q-Filter scores: `-(f . k_j)` with the head's filter `f` (``QFilters``), computed in f32 as
/// kvpress's `QFilterPress` does; keys that align with the head's dominant query direction are kept.
public struct QFilterScorer: KVStatelessScorer {
    /// The filters.
    public let filters: QFilters

    /// Creates the scorer.
    public init(filters: QFilters) {
        self.filters = filters
    }

    /// `-(f . k_j)` for every row.
    /// - Throws: `KVError.shapeMismatch` when the filters were made for another model shape.
    public func scores(_ context: KVLayerContext) throws(KVError) -> KVScores {
        try filters.check(context.shape)
        let l = context.layer
        return KVScores(heads: (0..<context.shape.kvHeads).map { m in
            let keys = context.cache.head(l, m).keys(0..<context.count(head: m))
            let f = Array(filters.filter(layer: l, head: m))
            var dots = [Float](repeating: 0, count: context.count(head: m))
            if !dots.isEmpty { kvk_matvec(KVK_F32, keys, dots.count, f.count, f, &dots) }
            return dots.map { -$0 }
        })
    }
}
