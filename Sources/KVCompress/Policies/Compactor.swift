/// Compactor: keeps the entries with the largest blend of key leverage and non-causal tile attention
/// (``CompactorScorer``), with the first 8 and last 4 prompt tokens always kept. Query-agnostic: the
/// same compressed prompt serves any later question. Entries are really evicted.
///
/// Paper: Chari and Van Durme, "Compactor: Calibrated Query-Agnostic KV Cache Compression with
/// Approximate Leverage Scores" (arXiv 2507.08143). Reference: NVIDIA/kvpress `compactor_press.py`
/// (`CompactorPress()`, blending = the compression ratio; kept sets compared with kvpress 0.5.5's run
/// after `torch.manual_seed(0)` at ratios 0.5 and 0.8).
public struct Compactor: KVScoredPolicy {
    /// The blend.
    public let scorer: CompactorScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy; the blending weight is the compression ratio for a ratio budget (as
    /// kvpress), 0.35 otherwise, unless given.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or scorer parameter.
    public init(budget: KVBudget, blending: Double? = nil, seed: UInt32 = 0, schedule: KVSchedule = .prefill) throws(KVError) {
        let weight: Double
        if let blending { weight = blending } else if case .compressionRatio(let r) = budget { weight = r } else { weight = 0.35 }
        scorer = try CompactorScorer(blending: weight, seed: seed)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"Compactor"`.
    public var name: String { "Compactor" }
}
