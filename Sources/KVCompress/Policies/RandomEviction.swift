/// Random eviction: keeps a uniform random subset of each head (seeded, see ``RandomScorer``), the
/// baseline that tells whether a policy's scores carry information. Entries are really evicted.
///
/// Reference: NVIDIA/kvpress `random_press.py` (`RandomPress(seed=0)`; kept sets equal to kvpress
/// 0.5.5's on the fixture prompt at ratios 0.5 and 0.8).
public struct RandomEviction: KVScoredPolicy {
    /// Seeded uniform scores.
    public let scorer: RandomScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget.
    public init(budget: KVBudget, seed: UInt32 = 0, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = RandomScorer(seed: seed)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"Random"`.
    public var name: String { "Random" }
}
