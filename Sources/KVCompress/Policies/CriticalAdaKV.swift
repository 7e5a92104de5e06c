/// CriticalAdaKV: AdaKV's head-adaptive budgets (``AdaptiveHeadSelector``), each head's budget
/// filled in CriticalKV's two stages (``CriticalSelector``). Needs the host's output projection.
/// Entries are really evicted (kvpress only masks).
///
/// Paper: Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation
/// Perspective" (arXiv 2502.03805). Reference: NVIDIA/kvpress `criticalkv_press.py`
/// (`CriticalAdaKVPress(press, alpha_safeguard=0.2, epsilon=1e-4, first_stage_ratio=0.5)`).
public struct CriticalAdaKV<Scorer: KVScorer>: KVScoredPolicy {
    /// The base scorer.
    public let scorer: Scorer
    /// Head-adaptive budgets, filled in two stages.
    public let selector: CriticalSelector<AdaptiveHeadSelector>
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, `alpha`, `epsilon` or `firstStageRatio`.
    public init(scorer: Scorer, budget: KVBudget, alpha: Double = 0.2, epsilon: Float = 1e-4,
                firstStageRatio: Double = 0.5, schedule: KVSchedule = .prefill) throws(KVError) {
        self.scorer = scorer
        selector = try CriticalSelector(inner: try AdaptiveHeadSelector(budget: budget, alpha: alpha), epsilon: epsilon,
                                        firstStageRatio: firstStageRatio)
        self.schedule = schedule
    }

    /// `"CriticalAdaKV(<scorer>)"`.
    public var name: String { "CriticalAdaKV(\(Scorer.self))" }
}
