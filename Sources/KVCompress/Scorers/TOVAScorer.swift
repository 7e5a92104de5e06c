/// TOVA: the attention of the **latest** query, averaged over **all** query heads, so every KV head
/// of a layer shares one ranking (kvpress `TOVAPress`).
///
/// `score[pos] = (1/H) sum_h A^h[last, pos]` (softmax over every row, the latest token's own row
/// included); the latest token's own row gets `max + 1`. When heads hold different rows (after a
/// head-adaptive eviction), a head missing a position contributes 0 to that position's mean.
///
/// Paper: Oren et al., "Transformers are Multi-State RNNs", EMNLP 2024 (arXiv 2401.06104).
/// References: schwartz-lab-NLP/TOVA `tova_cache.py`, NVIDIA/kvpress `tova_press.py`.
public struct TOVAScorer: KVStatelessScorer {
    /// Creates the scorer (no parameters).
    public init() {}

    /// Shared last-query attention.
    public func scores(_ context: KVLayerContext) -> KVScores {
        let last = context.tokenCount - 1
        let lastPosition = context.positions[last]
        let block = context.attention(tokens: last..<(last + 1))
        let g = context.shape.groupSize
        let H = context.shape.heads
        let positions = (0..<context.shape.kvHeads).map { context.positions(head: $0) }
        let maxPos = Int(positions.compactMap(\.last).max() ?? 0)
        var perPosition = [Float](repeating: 0, count: maxPos + 1)
        for h in 0..<H {
            let m = h / g
            for (j, p) in positions[m].enumerated() { perPosition[Int(p)] += block[h, 0, j] }
        }
        for i in perPosition.indices { perPosition[i] /= Float(H) }
        var best: Float?
        var heads = positions.map { pos in pos.map { perPosition[Int($0)] } }
        for m in heads.indices {
            for j in heads[m].indices where positions[m][j] != lastPosition {
                best = best.map { max($0, heads[m][j]) } ?? heads[m][j]
            }
        }
        let pad = (best ?? 0) + 1
        for m in heads.indices { for j in heads[m].indices where positions[m][j] == lastPosition { heads[m][j] = pad } }
        return KVScores(heads: heads)
    }
}
