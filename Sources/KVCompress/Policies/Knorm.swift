/// Knorm: keeps the entries whose keys have the smallest L2 norm (`score = -||k||`, f32). No sink
/// protection. See ``KnormScorer``.
///
/// Paper: Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
/// EMNLP 2024 (arXiv 2406.11430). Reference: NVIDIA/kvpress `knorm_press.py`.
public struct Knorm: KVScoredPolicy {
    /// Key norms.
    public let scorer: KnormScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget.
    public init(budget: KVBudget, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = KnormScorer()
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double, schedule: KVSchedule = .prefill) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), schedule: schedule)
    }

    /// `"Knorm"`.
    public var name: String { "Knorm" }
}
