/// CAPKV: keeps the entries that take the most of the layer's output capacity, weighted by how well
/// their keys align with the prompt's mean query (see ``CapScorer``). Entries are really evicted.
///
/// Paper: "CAPKV" (arXiv 2604.25975). Reference: NVIDIA/kvpress `cap_press.py` (`CapPress(tau=5)`;
/// kept sets compared with kvpress 0.5.5's on the fixture prompt at ratios 0.5 and 0.8).
public struct Cap: KVScoredPolicy {
    /// Capacity scores.
    public let scorer: CapScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or scorer parameter.
    public init(budget: KVBudget, tau: Double = 5, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try CapScorer(tau: tau)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"Cap"`.
    public var name: String { "Cap" }
}
