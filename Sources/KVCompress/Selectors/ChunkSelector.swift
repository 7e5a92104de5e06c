/// ChunkKV's selection (kvpress `ChunkKVPress`): whole chunks of consecutive entries stay or go
/// together, chosen by their mean score, so kept context stays semantically contiguous.
///
/// A layer's rows are cut into chunks of `chunkLength` (the last, shorter one counts as a chunk);
/// a chunk's score is the mean over its rows of the row's score summed over the layer's KV heads,
/// and the best chunks stay in every head (the same rows). With a ratio budget `r` the layer keeps
/// `max(1, Int(Double(chunks) * (1 - r)))` chunks, as kvpress does (750 of 1510 tokens at 0.5 with
/// chunks of 20); with a token or byte budget, as many whole chunks as fit (at least one). Equal
/// chunk scores rank the later chunk first. Heads that hold different rows (after per-head
/// eviction) are chunked each on its own scores.
public struct ChunkSelector: KVSelector {
    /// The budget.
    public let budget: KVBudget
    /// Entries per chunk (kvpress default 20).
    public let chunkLength: Int

    /// Creates a chunk selector.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or a chunk length below 1.
    public init(budget: KVBudget, chunkLength: Int = 20) throws(KVError) {
        self.budget = try budget.validated()
        guard chunkLength >= 1 else {
            throw .invalidParameter(name: "chunkLength", value: "\(chunkLength)", expected: ">= 1 entries per chunk")
        }
        self.chunkLength = chunkLength
    }

    /// The rows of the best chunks, the same in every head when the heads hold the same rows.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        KVSelection.sameRowsInEveryHead(scores, context: context) { chunkRows($0, cache: context.cache) }
    }

    /// The rows of the best chunks of one row sequence (nil: all of them).
    private func chunkRows(_ scores: [Float], cache: KVCache) -> [Int]? {
        let n = scores.count
        let chunks = (n + chunkLength - 1) / chunkLength
        let keep: Int
        switch budget {
        case .compressionRatio(let r): keep = r >= 1 ? 1 : max(1, Int(Double(chunks) * (1 - r)))
        default: keep = max(1, budget.keptCount(length: n, cache: cache) / chunkLength)
        }
        guard keep < chunks else { return nil }
        let means: [Float] = (0..<chunks).map { c in
            let rows = (c * chunkLength)..<min(n, (c + 1) * chunkLength)
            return rows.reduce(Float(0)) { $0 + scores[$1] } / Float(rows.count)
        }
        let best = means.indices.sorted { means[$0] != means[$1] ? means[$0] > means[$1] : $0 > $1 }.prefix(keep)
        return best.sorted().flatMap { c in Array((c * chunkLength)..<min(n, (c + 1) * chunkLength)) }
    }

    /// The budget's fixed capacity (`.tokens`, `.bytes`).
    public func decodeCapacity(context: KVLayerContext) -> Int? { budget.fixedCapacity(cache: context.cache) }
}
