/// Attention accumulated over queries, per layer, KV head and original position: the sum over
/// queries of the group mean of their softmax weights (state of ``ObservedAttentionScorer`` and
/// ``H2O``). Indexed by position, so it stays aligned with the cache through evictions (positions
/// must identify entries: do not combine with in-cache re-positioning).
public struct KVAccumulatedAttention: Sendable {
    var sums: [[[Float]]]
    let groupSize: Int

    /// Creates empty accumulators.
    public init(shape: KVModelShape) {
        sums = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        groupSize = shape.groupSize
    }

    /// Clears one layer (a new sequence).
    public mutating func reset(layer: Int) {
        for m in sums[layer].indices { sums[layer][m].removeAll(keepingCapacity: true) }
    }

    /// The accumulated value of one position (0 when never seen).
    public func value(layer: Int, head: Int, position: Int) -> Float {
        let a = sums[layer][head]
        return position < a.count ? a[position] : 0
    }

    /// Adds the attention of every query of the context: from the context's
    /// ``KVLayerContext/attentionColumnSums`` when the host provided them (one pass over the rows),
    /// otherwise probed `blockSize` queries at a time (as costly as the attention itself).
    public mutating func accumulate(_ context: KVLayerContext, blockSize: Int) {
        let l = context.layer
        let g = groupSize
        let positions = (0..<context.shape.kvHeads).map { context.positions(head: $0) }
        for m in positions.indices {
            let need = Int(positions[m].last ?? -1) + 1
            if sums[l][m].count < need { sums[l][m].append(contentsOf: repeatElement(0, count: need - sums[l][m].count)) }
        }
        if let columnSums = context.attentionColumnSums {
            for m in positions.indices {
                sums[l][m].withUnsafeMutableBufferPointer { acc in
                    for (j, pos) in positions[m].enumerated() { acc[Int(pos)] += columnSums[m][j] / Float(g) }
                }
            }
            return
        }
        var start = 0
        while start < context.tokenCount {
            let end = min(start + blockSize, context.tokenCount)
            let block = context.attention(tokens: start..<end)
            for m in positions.indices {
                sums[l][m].withUnsafeMutableBufferPointer { acc in
                    for h in (m * g)..<(m * g + g) {
                        for t in 0..<block.queryCount {
                            let base = (h * block.queryCount + t) * block.keyStride
                            block.probabilities.withUnsafeBufferPointer { p in
                                for (j, pos) in positions[m].enumerated() { acc[Int(pos)] += p[base + j] / Float(g) }
                            }
                        }
                    }
                }
            }
            start = end
        }
    }
}
