/// LeverageScore: keeps the entries whose pre-RoPE keys have the largest approximate statistical
/// leverage (``LeverageScoreScorer``), a query-free outlier score. Entries are really evicted.
///
/// Paper: Chari and Van Durme, "Compactor: Calibrated Query-Agnostic KV Cache Compression with
/// Approximate Leverage Scores" (arXiv 2507.08143). Reference: NVIDIA/kvpress `leverage_press.py`
/// (`LeverageScorePress(sketch_dimension=48)`; kept sets compared with kvpress 0.5.5's run after
/// `torch.manual_seed(0)` at ratios 0.5 and 0.8).
public struct LeverageScore: KVScoredPolicy {
    /// Leverage scores.
    public let scorer: LeverageScoreScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or sketch dimension.
    public init(budget: KVBudget, sketchDimension: Int = 48, seed: UInt32 = 0, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try LeverageScoreScorer(sketchDimension: sketchDimension, seed: seed)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"LeverageScore"`.
    public var name: String { "LeverageScore" }
}
