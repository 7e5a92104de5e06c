import Foundation

/// EntropyGatedChunkKV's selection (kvpress `EntropyGatedChunkKVPress`): chunks are taken best
/// first as in ``ChunkSelector``, but an important chunk whose importance sits on a few tokens
/// (low entropy of its scores) keeps only its best `spikyChunkKeep` tokens, and the freed budget
/// goes to further chunks. The layer keeps exactly the budget's count.
///
/// With `s_j` the row scores summed over the layer's KV heads: chunks of `chunkLength` rows (the
/// last may be shorter) score their mean; a chunk's entropy is that of its scores shifted to be
/// non-negative (`p = s' / (sum + 1e-8)`, `h = -sum p log(p + 1e-8) / log(chunk size)`, clamped to
/// `[0, 1]`; 0 for a one-row chunk). A chunk is "spiky" when its score is at least the median chunk
/// score and its entropy below the median entropy (medians as torch takes them: the lower middle
/// value). Chunks are visited by descending score; each keeps all of its rows or, if spiky or the
/// budget runs short, its top rows; whatever budget is left at the end goes to the best rows not
/// yet kept. The same rows stay in every head.
public struct EntropyGatedChunkSelector: KVSelector {
    /// The budget (kvpress: `max(1, Int(L * (1 - ratio)))` rows).
    public let budget: KVBudget
    /// Rows per chunk (kvpress default 10).
    public let chunkLength: Int
    /// Rows a spiky chunk keeps (kvpress default 4).
    public let spikyChunkKeep: Int

    /// Creates the selector.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or unless
    ///   `chunkLength > spikyChunkKeep >= 1`.
    public init(budget: KVBudget, chunkLength: Int = 10, spikyChunkKeep: Int = 4) throws(KVError) {
        self.budget = try budget.validated()
        guard chunkLength > spikyChunkKeep, spikyChunkKeep >= 1 else {
            throw .invalidParameter(name: "chunkLength / spikyChunkKeep", value: "\(chunkLength) / \(spikyChunkKeep)",
                                    expected: "chunkLength > spikyChunkKeep >= 1")
        }
        self.chunkLength = chunkLength
        self.spikyChunkKeep = spikyChunkKeep
    }

    /// The kept rows, the same in every head (heads holding different rows are chosen each on its own).
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        KVSelection.sameRowsInEveryHead(scores, context: context) { rows($0, cache: context.cache) }
    }

    /// Normalized entropy of one chunk's scores (shifted to be non-negative).
    private func entropy(_ s: ArraySlice<Float>) -> Float {
        guard s.count > 1 else { return 0 }
        let shift = min(s.min()!, 0)
        let total = s.reduce(Float(0)) { $0 + ($1 - shift) }
        var h: Float = 0
        for x in s {
            let p = (x - shift) / (total + 1e-8)
            h -= p * logf(p + 1e-8)
        }
        return min(max(h / logf(Float(s.count)), 0), 1)
    }

    /// The rows one score sequence keeps (nil: all).
    private func rows(_ scores: [Float], cache: KVCache) -> [Int]? {
        let n = scores.count
        var budget = self.budget.keptCount(length: n, cache: cache)
        guard budget < n else { return nil }
        let chunks = (0..<((n + chunkLength - 1) / chunkLength)).map { ($0 * chunkLength)..<min(n, ($0 + 1) * chunkLength) }
        let means = chunks.map { c in scores[c].reduce(Float(0), +) / Float(c.count) }
        let entropies = chunks.map { entropy(scores[$0]) }
        func lowerMedian(_ v: [Float]) -> Float { v.sorted()[(v.count - 1) / 2] }
        let scoreMedian = lowerMedian(means), entropyMedian = lowerMedian(entropies)
        var keep = [Bool](repeating: false, count: n)
        func best(_ candidates: [Int], _ k: Int) -> ArraySlice<Int> {
            candidates.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 > $1 }.prefix(k)
        }
        for c in chunks.indices.sorted(by: { means[$0] != means[$1] ? means[$0] > means[$1] : $0 > $1 }) {
            guard budget > 0 else { break }
            var take = min(chunks[c].count, budget)
            if means[c] >= scoreMedian && entropies[c] < entropyMedian { take = min(take, spikyChunkKeep) }
            for j in best(Array(chunks[c]), take) { keep[j] = true }
            budget -= take
        }
        if budget > 0 { for j in best((0..<n).filter { !keep[$0] }, budget) { keep[j] = true } }
        return (0..<n).filter { keep[$0] }
    }

    /// The budget's fixed capacity (`.tokens`, `.bytes`).
    public func decodeCapacity(context: KVLayerContext) -> Int? { budget.fixedCapacity(cache: context.cache) }
}
