/// KeyDiff: keeps the keys least similar to the head's mean key direction. See ``KeyDiffScorer``.
///
/// Paper: Park et al., "KeyDiff: Key Similarity-Based KV Cache Eviction for Long-Context LLM
/// Inference in Resource-Constrained Environments" (arXiv 2504.15364). Reference: NVIDIA/kvpress
/// `keydiff_press.py`.
public struct KeyDiff: KVScoredPolicy {
    /// Key dissimilarity.
    public let scorer: KeyDiffScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget.
    public init(budget: KVBudget, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = KeyDiffScorer()
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double, schedule: KVSchedule = .prefill) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), schedule: schedule)
    }

    /// `"KeyDiff"`.
    public var name: String { "KeyDiff" }
}
