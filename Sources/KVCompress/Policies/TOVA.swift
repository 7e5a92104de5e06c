/// TOVA: keeps the entries the latest query attends to most, averaged over all query heads (one
/// ranking shared by every KV head). See ``TOVAScorer``.
///
/// With ``KVSchedule/prefill`` (default) it compresses once after the prompt like kvpress
/// `TOVAPress`; with ``KVSchedule/prefillAndDecode`` it also drops the least-attended entry at every
/// step once a head exceeds its capacity, like the original TOVA cache.
///
/// Paper: Oren et al., "Transformers are Multi-State RNNs", EMNLP 2024 (arXiv 2401.06104).
/// References: schwartz-lab-NLP/TOVA, NVIDIA/kvpress `tova_press.py`.
public struct TOVA: KVScoredPolicy {
    /// Last-query attention.
    public let scorer: TOVAScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget.
    public init(budget: KVBudget, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = TOVAScorer()
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double, schedule: KVSchedule = .prefill) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), schedule: schedule)
    }

    /// `"TOVA"`.
    public var name: String { "TOVA" }
}
