/// AdaKV: any scorer with head-adaptive budgets inside each layer (the layer keeps as many entries as
/// a uniform budget, chosen jointly across its KV heads, each head protected down to `alpha` of
/// the uniform count). See ``AdaptiveHeadSelector``. Entries are really evicted (kvpress only masks).
///
/// Paper: Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for
/// Efficient LLM Inference" (arXiv 2407.11550). References: FFY0/AdaKV, NVIDIA/kvpress
/// `adakv_press.py`.
public struct AdaKV<Scorer: KVScorer>: KVScoredPolicy {
    /// The base scorer.
    public let scorer: Scorer
    /// Head-adaptive selection.
    public let selector: AdaptiveHeadSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or `alpha` outside `[0, 1]`.
    public init(scorer: Scorer, budget: KVBudget, alpha: Double = 0.2, schedule: KVSchedule = .prefill) throws(KVError) {
        self.scorer = scorer
        selector = try AdaptiveHeadSelector(budget: budget, alpha: alpha)
        self.schedule = schedule
    }

    /// `"AdaKV(<scorer>)"`.
    public var name: String { "AdaKV(\(Scorer.self))" }
}
