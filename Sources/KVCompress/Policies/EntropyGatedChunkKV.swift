/// EntropyGatedChunkKV: ChunkKV whose spiky chunks (important, but through a few tokens) keep only
/// their best tokens, the budget they free going to further chunks (see
/// ``EntropyGatedChunkSelector``). Entries are really evicted.
///
/// Based on ChunkKV (Liu et al., arXiv 2502.00299). Reference: NVIDIA/kvpress
/// `entropy_gated_chunkkv_press.py` (`EntropyGatedChunkKVPress(press=SnapKVPress())`).
public struct EntropyGatedChunkKV<Scorer: KVScorer>: KVScoredPolicy {
    /// The base scorer.
    public let scorer: Scorer
    /// Entropy-gated chunk selection.
    public let selector: EntropyGatedChunkSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy (kvpress defaults: chunks of 10, spiky chunks keep 4).
    /// - Throws: `KVError.invalidParameter` for an invalid budget or chunk sizes.
    public init(scorer: Scorer, budget: KVBudget, chunkLength: Int = 10, spikyChunkKeep: Int = 4,
                schedule: KVSchedule = .prefill) throws(KVError) {
        self.scorer = scorer
        selector = try EntropyGatedChunkSelector(budget: budget, chunkLength: chunkLength, spikyChunkKeep: spikyChunkKeep)
        self.schedule = schedule
    }

    /// `"EntropyGatedChunkKV(<scorer>)"`.
    public var name: String { "EntropyGatedChunkKV(\(Scorer.self))" }
}
