/// Expected Attention: keeps the entries future queries are expected to attend to, estimated from
/// the prompt's query statistics and the averaged RoPE rotation of the next positions (times value
/// norms). See ``ExpectedAttentionScorer``. The host must pass pre-RoPE queries. With offline
/// `statistics` (kvpress's `ExpectedAttentionStatsPress`) the model's calibrated query statistics
/// replace the prompt's.
///
/// kvpress's evaluation registry uses it under AdaKV with `epsilon = 0.01`:
/// `AdaKV(scorer: try ExpectedAttentionScorer(epsilon: 0.01), budget: ...)`.
///
/// Paper: Devoto et al., "Expected Attention: KV-cache Compression by Estimating Attention from
/// Future Queries Distribution" (arXiv 2510.00636). Reference: NVIDIA/kvpress
/// `expected_attention_press.py`.
public struct ExpectedAttention: KVScoredPolicy {
    /// Expected-attention scores.
    public let scorer: ExpectedAttentionScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict (``KVSchedule/prefill``: once after the prompt, as kvpress).
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or scorer parameter.
    public init(budget: KVBudget, futurePositions: Int = 512, sinks: Int = 4, useCovariance: Bool = true,
                useValueNorm: Bool = true, epsilon: Double = 0, statistics: ExpectedAttentionStats? = nil,
                schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try ExpectedAttentionScorer(futurePositions: futurePositions, sinks: sinks,
                                             useCovariance: useCovariance, useValueNorm: useValueNorm,
                                             epsilon: epsilon, statistics: statistics)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio))
    }

    /// `"ExpectedAttention"` (`"ExpectedAttentionStats"` with offline statistics).
    public var name: String { scorer.statistics == nil ? "ExpectedAttention" : "ExpectedAttentionStats" }
}
