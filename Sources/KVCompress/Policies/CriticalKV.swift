/// CriticalKV: any scorer, with each head's budget filled in two stages: half by the scores, half by
/// the scores rescaled by how much each value writes into the layer's output (`||W_o v||_1`, see
/// ``CriticalSelector``). Needs the host's output projection (``LlamaSession`` provides it).
/// Entries are really evicted.
///
/// Paper: Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation
/// Perspective" (arXiv 2502.03805). Reference: NVIDIA/kvpress `criticalkv_press.py`
/// (`CriticalKVPress(press, epsilon=1e-4, first_stage_ratio=0.5)`; with ExpectedAttention as the
/// inner press, kvpress advises `use_vnorm=False`, which the catalog's `CriticalKV:ExpectedAttention`
/// follows).
public struct CriticalKV<Scorer: KVScorer>: KVScoredPolicy {
    /// The base scorer.
    public let scorer: Scorer
    /// Uniform budgets, filled in two stages.
    public let selector: CriticalSelector<UniformSelector>
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, `epsilon` or `firstStageRatio`.
    public init(scorer: Scorer, budget: KVBudget, epsilon: Float = 1e-4, firstStageRatio: Double = 0.5,
                schedule: KVSchedule = .prefill) throws(KVError) {
        self.scorer = scorer
        selector = try CriticalSelector(inner: try UniformSelector(budget: budget), epsilon: epsilon,
                                        firstStageRatio: firstStageRatio)
        self.schedule = schedule
    }

    /// `"CriticalKV(<scorer>)"`.
    public var name: String { "CriticalKV(\(Scorer.self))" }
}
