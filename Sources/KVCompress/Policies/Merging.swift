/// Merging: any scorer's uniform per-head selection, with each dropped entry's value folded into
/// the most key-similar kept entry before it is evicted
/// (``KVRepresentation/mergeValues(similarityThreshold:mergeFraction:)``, ``KVValueMerging``). The
/// kept set is the scorer's; the memory saving is the same as plain eviction's. Needs row formats
/// for values (or a KIVI cache whose prompt is still in its f16 residual, as at the end of a
/// one-pass prefill).
///
/// Reference: NVIDIA/kvpress `merging_press.py` (`MergingPress(press, similarity_threshold=0.0,
/// merge_fraction=1.0)`, after Bolya et al., "Token Merging", ICLR 2023, arXiv 2210.09461, and Wan
/// et al., "D2O", arXiv 2406.13035).
public struct Merging<Scorer: KVScorer>: KVScoredPolicy {
    /// The base scorer.
    public let scorer: Scorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule
    /// Merge dropped values, then evict.
    public let representation: KVRepresentation

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, a threshold above 1 or a fraction
    ///   outside `(0, 1]`.
    public init(scorer: Scorer, budget: KVBudget, similarityThreshold: Float = 0, mergeFraction: Double = 1,
                schedule: KVSchedule = .prefill) throws(KVError) {
        try KVValueMerging.validate(similarityThreshold: similarityThreshold, mergeFraction: mergeFraction)
        self.scorer = scorer
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
        representation = .mergeValues(similarityThreshold: similarityThreshold, mergeFraction: mergeFraction)
    }

    /// `"Merging(<scorer>)"`.
    public var name: String { "Merging(\(Scorer.self))" }
}
