/// NonCausalAttention: keeps the entries that the prompt's own tokens, looking both ways inside
/// tiles of 256, attend to most, weighted by their value norms (see ``NonCausalAttentionScorer``),
/// with a uniform per-head budget.
///
/// Paper: Chari & Van Durme, "Compactor: Calibrated Query-Agnostic KV Cache Compression with
/// Approximate Leverage Scores" (arXiv 2507.08143). Reference: NVIDIA/kvpress
/// `non_causal_attention_press.py`.
public struct NonCausalAttention: KVScoredPolicy {
    /// Non-causal tile attention scores.
    public let scorer: NonCausalAttentionScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy (kvpress default tiles of 256 tokens).
    /// - Throws: `KVError.invalidParameter` for an invalid budget or tile.
    public init(budget: KVBudget, tile: Int = 256, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try NonCausalAttentionScorer(tile: tile)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"NonCausalAttention"`.
    public var name: String { "NonCausalAttention" }
}
