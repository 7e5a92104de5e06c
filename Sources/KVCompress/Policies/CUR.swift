/// CUR: keeps the entries with the largest approximate CUR leverage of keys and values (see
/// ``CURScorer``), with a uniform per-head budget.
///
/// Paper: Sengupta et al., "Value-Guided KV Compression for LLMs via Approximated CUR
/// Decomposition" (arXiv 2509.15038). Reference: NVIDIA/kvpress `cur_press.py`.
public struct CUR: KVScoredPolicy {
    /// Leverage scores.
    public let scorer: CURScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy (kvpress defaults: 4 sinks, `k2 * v2`, windows of 16).
    /// - Throws: `KVError.invalidParameter` for an invalid budget or scorer parameter.
    public init(budget: KVBudget, scorer: CURScorer? = nil, schedule: KVSchedule = .prefill) throws(KVError) {
        if let scorer {
            self.scorer = scorer
        } else {
            self.scorer = try CURScorer()
        }
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"CUR"`.
    public var name: String { "CUR" }
}
