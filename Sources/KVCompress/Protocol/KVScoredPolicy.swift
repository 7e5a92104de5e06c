/// A policy made of a ``KVScorer`` (which entries matter) and a ``KVSelector`` (how many stay per
/// layer and head), evicting on a ``KVSchedule``. Conforming types declare the three properties and
/// get both hooks for free:
///
/// - prefill: the scorer observes every chunk; after the last chunk the layer is scored, the
///   selector picks rows per head and the rest is evicted;
/// - decode (``KVSchedule/prefillAndDecode`` only): the scorer observes the step, and every head
///   over its capacity is cut back to it by top-k of fresh scores.
public protocol KVScoredPolicy: KVCachePolicy where State == KVScoredState<Scorer.State> {
    /// The scorer type.
    associatedtype Scorer: KVScorer
    /// The selector type.
    associatedtype Selector: KVSelector
    /// Scores entries.
    var scorer: Scorer { get }
    /// Chooses how many and which entries stay.
    var selector: Selector { get }
    /// When to evict (default ``KVSchedule/prefill``).
    var schedule: KVSchedule { get }
    /// What happens to entries that are not kept (default ``KVRepresentation/evict``).
    var representation: KVRepresentation { get }
}

extension KVScoredPolicy {
    /// Default: compress once after the prompt.
    public var schedule: KVSchedule { .prefill }

    /// Default: evict.
    public var representation: KVRepresentation { .evict }

    /// The scorer's ``KVScorer/needsAttentionColumnSums``.
    public var needsAttentionColumnSums: Bool { scorer.needsAttentionColumnSums }

    /// Applies a selection with the policy's representation.
    func commit(_ keep: [[Int]?], context: KVLayerContext) throws(KVError) {
        switch representation {
        case .evict: try KVSelection.apply(keep, context: context)
        case let .mergeValues(threshold, fraction):
            try KVValueMerging.merge(keep, context: context, similarityThreshold: threshold, mergeFraction: fraction)
            try KVSelection.apply(keep, context: context)
        case .lowPrecision:
            let cache = context.cache
            guard cache.keyFormat == .zipCache else {
                throw .invalidState("\(name) keeps dropped entries at a lower precision, which needs a zipcache cache "
                    + "(--cache zipcache, KVEntryFormat.zipCache); this one stores \(cache.keyFormat) keys")
            }
            for (m, rows) in keep.enumerated() {
                let n = cache.bufferedCount(layer: context.layer, head: m)
                let first = cache.count(layer: context.layer, head: m) - n
                var salient = [Bool](repeating: rows == nil, count: n)
                for j in rows ?? [] where j >= first { salient[j - first] = true }
                try cache.quantizeBlock(layer: context.layer, head: m, salient: salient)
            }
        }
    }

    /// The scorer's scores for the context's layer, checked to hold one score per entry of every
    /// KV head (a custom scorer's mistake is a `KVError.shapeMismatch`, not a crash).
    func checkedScores(_ context: KVLayerContext, state: inout Scorer.State) throws(KVError) -> KVScores {
        let scores = try scorer.scores(context, state: &state)
        try scores.check(against: context, scorer: String(describing: Scorer.self))
        return scores
    }

    /// Fresh scorer state and unbounded capacities.
    public func makeState(shape: KVModelShape) -> KVScoredState<Scorer.State> {
        KVScoredState(scorer: scorer.makeState(shape: shape), layers: shape.layers, kvHeads: shape.kvHeads)
    }

    /// Observes the chunk; scores and evicts after the last one.
    ///
    /// Only the sequence's first prompt is compressed to the budget. A later prompt (a question
    /// after a compressed context, a new chat turn) is left alone with ``KVSchedule/prefill``
    /// (kvpress compresses only the first forward pass), and cut back to each head's capacity with
    /// ``KVSchedule/prefillAndDecode``.
    public func afterPrefill(_ context: KVLayerContext, state: inout KVScoredState<Scorer.State>) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk {
            state.compressed[l] = false
            for m in state.capacity[l].indices { state.capacity[l][m] = nil }
        }
        if state.compressed[l] {
            guard schedule == .prefillAndDecode else { return }
            try scorer.observe(context, state: &state.scorer)
            if context.isLastChunk { try enforceCapacity(context, state: &state) }
            return
        }
        try scorer.observe(context, state: &state.scorer)
        guard context.isLastChunk else { return }
        let scores = try checkedScores(context, state: &state.scorer)
        try commit(try selector.select(scores, context: context), context: context)
        state.compressed[l] = true
        if schedule == .prefillAndDecode {
            let fixed = selector.decodeCapacity(context: context)
            for m in 0..<context.shape.kvHeads {
                state.capacity[l][m] = fixed ?? max(context.count(head: m), KVBudget.minimumRollingCapacity)
            }
        }
    }

    /// With ``KVSchedule/prefillAndDecode``: observes the step and cuts heads back to their capacity
    /// (with ``KVSchedule/prefill`` it does nothing, so decoding costs nothing extra).
    public func afterDecode(_ context: KVLayerContext, state: inout KVScoredState<Scorer.State>) throws(KVError) {
        guard schedule == .prefillAndDecode else { return }  // nothing will be selected: skip observing
        try scorer.observe(context, state: &state.scorer)
        try enforceCapacity(context, state: &state)
    }

    /// Cuts every head of the context's layer above its capacity back to it (top-k of fresh scores).
    func enforceCapacity(_ context: KVLayerContext, state: inout KVScoredState<Scorer.State>) throws(KVError) {
        let fixed = selector.decodeCapacity(context: context)
        let counts = context.counts
        let caps = counts.indices.map { state.capacity[context.layer][$0] ?? fixed }
        let keep = counts.indices.map { m in caps[m].map { cap in min(cap, counts[m]) } ?? counts[m] }
        guard keep != counts else { return }
        let scores = try checkedScores(context, state: &state.scorer)
        try commit(try KVSelection.topK(scores, keep: keep, context: context), context: context)
    }
}
