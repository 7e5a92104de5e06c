/// ChunkKV: any scorer, but entries stay or go in chunks of consecutive tokens chosen by their mean
/// score summed over the layer's KV heads (see ``ChunkSelector``), so what is kept stays
/// semantically whole. Entries are really evicted.
///
/// Paper: Liu et al., "ChunkKV: Semantic-Preserving KV Cache Compression for Efficient Long-Context
/// LLM Inference" (arXiv 2502.00299). Reference: NVIDIA/kvpress `chunkkv_press.py`
/// (`ChunkKVPress(press=SnapKVPress(), chunk_length=20)`; kept sets equal to kvpress 0.5.5's on the
/// fixture prompt at ratios 0.5 and 0.8).
public struct ChunkKV<Scorer: KVScorer>: KVScoredPolicy {
    /// The base scorer.
    public let scorer: Scorer
    /// Chunk-wise selection.
    public let selector: ChunkSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or a chunk length below 1.
    public init(scorer: Scorer, budget: KVBudget, chunkLength: Int = 20, schedule: KVSchedule = .prefill) throws(KVError) {
        self.scorer = scorer
        selector = try ChunkSelector(budget: budget, chunkLength: chunkLength)
        self.schedule = schedule
    }

    /// `"ChunkKV(<scorer>)"`.
    public var name: String { "ChunkKV(\(Scorer.self))" }
}
