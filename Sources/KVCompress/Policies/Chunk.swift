/// Chunk: any scorer applied to each span of `chunkLength` (1024) consecutive entries on its own,
/// each span keeping the same fraction (``ChunkScorer`` + ``PerChunkSelector``), so the kept
/// entries cover the whole prompt evenly instead of gathering where the scorer's values are large.
/// Entries are really evicted.
///
/// Reference: NVIDIA/kvpress `chunk_press.py` (`ChunkPress(press, chunk_length=1024)`, after
/// Corallo and Papotti, "FINCH", TACL 2024). Kept sets equal kvpress 0.5.5's over Knorm and KeyDiff
/// on the fixture prompt at ratios 0.5 and 0.8; over query-based scorers each span here is scored
/// by the hook's own queries, where kvpress re-rotates the span's last tokens (see ``ChunkScorer``).
public struct Chunk<Scorer: KVScorer>: KVScoredPolicy {
    /// The span-wise scorer.
    public let scorer: ChunkScorer<Scorer>
    /// The span-wise budget.
    public let selector: PerChunkSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or `chunkLength < 1`.
    public init(scorer: Scorer, budget: KVBudget, chunkLength: Int = 1024, schedule: KVSchedule = .prefill) throws(KVError) {
        self.scorer = try ChunkScorer(inner: scorer, chunkLength: chunkLength)
        selector = try PerChunkSelector(budget: budget, chunkLength: chunkLength)
        self.schedule = schedule
    }

    /// `"Chunk(<scorer>)"`.
    public var name: String { "Chunk(\(Scorer.self))" }
}
