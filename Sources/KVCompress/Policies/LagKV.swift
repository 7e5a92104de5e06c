/// LagKV: keeps, in every partition of 128 tokens, the tokens that differ most from the next
/// partition's range (see ``LagKVScorer``), with a uniform per-head budget; sinks and the newest
/// tokens always stay.
///
/// Paper: Liang et al., "LagKV: Lag-Relative Information of the KV Cache Tells Which Tokens Are
/// Important" (arXiv 2504.04704). Reference: NVIDIA/kvpress `lagkv_press.py`.
public struct LagKV: KVScoredPolicy {
    /// Lag-relative scores.
    public let scorer: LagKVScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy (kvpress defaults: 4 sinks, partitions of 128).
    /// - Throws: `KVError.invalidParameter` for an invalid budget or scorer parameter.
    public init(budget: KVBudget, sinks: Int = 4, lag: Int = 128, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try LagKVScorer(sinks: sinks, lag: lag)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"LagKV"`.
    public var name: String { "LagKV" }
}
