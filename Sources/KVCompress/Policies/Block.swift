/// Block: the prompt compressed block by block, as a block-wise prefill with a bounded cache would:
/// the first `n` entries (the budget) are kept, then each following block of `blockSize` entries is
/// added, the union is scored on its own by the inner scorer (``KVLayerContext`` rows copied into a
/// cache of their own) and cut back to its best `n`. An entry once dropped never returns. Done once
/// per layer at the end of the first prompt. Entries are really evicted.
///
/// Paper protocol of KeyDiff: Park et al., "KeyDiff: Key Similarity-Based KV Cache Eviction for
/// Long-Context LLM Inference in Resource-Constrained Environments" (arXiv 2504.15364). Reference:
/// NVIDIA/kvpress `block_press.py` (`BlockPress(press, block_size=128)`; kept sets equal to kvpress
/// 0.5.5's over KeyDiff on the fixture prompt at ratios 0.5 and 0.8). The inner scorer sees the
/// hook's queries; kvpress passes query-based presses a mix of hidden states from different heads'
/// kept tokens, which has no counterpart here.
public struct Block<Scorer: KVScorer>: KVCachePolicy {
    /// The scorer of each union.
    public let scorer: Scorer
    /// Entries each head keeps.
    public let budget: KVBudget
    /// Entries added per step (kvpress default 128).
    public let blockSize: Int

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or `blockSize < 1`.
    public init(scorer: Scorer, budget: KVBudget, blockSize: Int = 128) throws(KVError) {
        guard blockSize >= 1 else { throw .invalidParameter(name: "blockSize", value: "\(blockSize)", expected: ">= 1") }
        self.scorer = scorer
        self.budget = try budget.validated()
        self.blockSize = blockSize
    }

    /// `compressed[layer]`: the first prompt of the sequence was compressed in that layer.
    public typealias State = [Bool]

    /// Nothing compressed yet.
    public func makeState(shape: KVModelShape) -> [Bool] { Array(repeating: false, count: shape.layers) }

    /// At the end of the first prompt: the block-wise compression of the layer.
    /// - Throws: what the scorer throws.
    public func afterPrefill(_ context: KVLayerContext, state: inout [Bool]) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk { state[l] = false }
        guard context.isLastChunk, !state[l] else { return }
        state[l] = true
        let counts = context.counts
        let n = counts.max() ?? 0
        let keep = counts.map { budget.keptCount(length: $0, cache: context.cache) }
        guard zip(keep, counts).contains(where: { $0 < $1 }) else { return }
        var kept = keep.map { Array(0..<$0) }
        let positions = counts.indices.map { context.positions(head: $0) }
        for start in stride(from: keep.min() ?? 0, to: n, by: blockSize) {
            let union = counts.indices.map { m in
                let lo = max(start, keep[m]), hi = min(start + blockSize, counts[m])
                return kept[m] + (lo < hi ? Array(lo..<hi) : [])
            }
            let scores = try context.scores(of: union, by: scorer)
            for m in counts.indices {
                let chosen = try KVSelection.topK(scores: scores.heads[m], positions: union[m].map { positions[m][$0] }, k: keep[m])
                kept[m] = chosen.map { $0.map { union[m][$0] } } ?? union[m]
            }
        }
        try KVSelection.apply(kept, context: context)
    }

    /// `"Block(<scorer>)"`.
    public var name: String { "Block(\(Scorer.self))" }
}
