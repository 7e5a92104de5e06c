/// Attention accumulated over queries, per layer, KV head and original position: the sum over
/// queries of the group mean of their softmax weights (state of ``ObservedAttentionScorer`` and
/// ``H2O``). Keyed by position, so it stays aligned with the cache through evictions (positions
/// must identify entries: do not combine with in-cache re-positioning), and it holds values only
/// for the positions the cache still holds, so it stays as small as the cache on an endless stream.
public struct KVAccumulatedAttention: Sendable {
    /// Per layer and KV head: the positions seen at the last accumulation (ascending) and their sums.
    var positions: [[[Int32]]]
    var sums: [[[Float]]]
    let groupSize: Int

    /// Creates empty accumulators.
    public init(shape: KVModelShape) {
        positions = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        sums = positions.map { $0.map { _ in [] } }
        groupSize = shape.groupSize
    }

    /// Clears one layer (a new sequence).
    public mutating func reset(layer: Int) {
        for m in sums[layer].indices {
            positions[layer][m].removeAll(keepingCapacity: true)
            sums[layer][m].removeAll(keepingCapacity: true)
        }
    }

    /// The accumulated value of one position (0 when never seen or evicted).
    /// - Complexity: O(log entries).
    public func value(layer: Int, head: Int, position: Int) -> Float {
        let p = positions[layer][head]
        var lo = 0, hi = p.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Int(p[mid]) < position { lo = mid + 1 } else { hi = mid }
        }
        return lo < p.count && Int(p[lo]) == position ? sums[layer][head][lo] : 0
    }

    /// Adds the attention of every query of the context: from the context's
    /// ``KVLayerContext/attentionColumnSums`` when the host provided them (one pass over the rows),
    /// otherwise probed `blockSize` queries at a time (as costly as the attention itself).
    /// Positions the cache no longer holds are dropped first.
    public mutating func accumulate(_ context: KVLayerContext, blockSize: Int) {
        let l = context.layer
        let g = groupSize
        let positions = (0..<context.shape.kvHeads).map { context.positions(head: $0) }
        for m in positions.indices { align(layer: l, head: m, to: positions[m]) }
        if let columnSums = context.attentionColumnSums {
            for m in positions.indices {
                sums[l][m].withUnsafeMutableBufferPointer { acc in
                    for j in positions[m].indices { acc[j] += columnSums[m][j] / Float(g) }
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
                                for j in positions[m].indices { acc[j] += p[base + j] / Float(g) }
                            }
                        }
                    }
                }
            }
            start = end
        }
    }

    /// Re-keys one head's sums to the cache's current rows (ascending positions): kept positions
    /// carry their sums, new ones start at 0, evicted ones are dropped.
    private mutating func align(layer l: Int, head m: Int, to current: [Int32]) {
        let old = positions[l][m]
        if old == current { return }
        let oldSums = sums[l][m]
        var aligned = [Float](repeating: 0, count: current.count)
        var i = 0
        for (j, p) in current.enumerated() {
            while i < old.count && old[i] < p { i += 1 }
            if i < old.count && old[i] == p { aligned[j] = oldSums[i] }
        }
        positions[l][m] = current
        sums[l][m] = aligned
    }
}
