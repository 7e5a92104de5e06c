/// kvpress ObservedAttention: keeps the entries with the largest average attention over every
/// prompt query (normalized by how many queries could see them). See ``ObservedAttentionScorer``.
///
/// Paper: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
/// Language Models", NeurIPS 2023 (arXiv 2306.14048). Reference: NVIDIA/kvpress
/// `observed_attention_press.py`.
public struct ObservedAttention: KVScoredPolicy {
    /// Accumulated normalized attention.
    public let scorer: ObservedAttentionScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict (``KVSchedule/prefill``: once after the prompt, as kvpress).
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or block size.
    public init(budget: KVBudget, blockSize: Int = 64, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try ObservedAttentionScorer(blockSize: blockSize)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio))
    }

    /// `"ObservedAttention"`.
    public var name: String { "ObservedAttention" }
}
