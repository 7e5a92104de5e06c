/// AdaKV's head-adaptive selection (kvpress `AdaKVPress`): the layer keeps as many entries in total
/// as a uniform budget would, but chooses them jointly across its KV heads, so heads with spread-out
/// attention keep more than concentrated ones.
///
/// With `n` the uniform per-head count: each head first protects its top `Int(n * alpha)` entries
/// (the safeguard), then the `kvHeads * n` best entries of the whole layer are kept. Ties rank the
/// larger position first, then the lower head index. Unlike kvpress (which masks), the evicted
/// entries are really freed.
public struct AdaptiveHeadSelector: KVSelector {
    /// The uniform budget whose total is redistributed.
    public let budget: KVBudget
    /// Safeguard fraction in `[0, 1]` (kvpress default 0.2).
    public let alpha: Double

    /// Creates an AdaKV selector.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or `alpha` outside `[0, 1]`.
    public init(budget: KVBudget, alpha: Double = 0.2) throws(KVError) {
        self.budget = try budget.validated()
        guard alpha >= 0, alpha <= 1 else {
            throw .invalidParameter(name: "alpha", value: "\(alpha)", expected: "a fraction in [0, 1]")
        }
        self.alpha = alpha
    }

    /// Joint selection across the layer's heads.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        let counts = context.counts
        let hk = counts.count
        let positions = (0..<hk).map { context.positions(head: $0) }
        var adjusted = scores.heads
        var total = 0
        for m in 0..<hk {
            let n = budget.keptCount(length: counts[m], cache: context.cache)
            total += n
            let safe = safeguardCount(uniformCount: n)
            if safe > 0 {
                for j in try KVSelection.ranking(scores: adjusted[m], positions: positions[m]).prefix(safe) {
                    adjusted[m][j] = .greatestFiniteMagnitude
                }
            }
        }
        if total >= counts.reduce(0, +) { return Array(repeating: nil, count: hk) }
        var all: [(head: Int, row: Int)] = []
        all.reserveCapacity(counts.reduce(0, +))
        for m in 0..<hk { for j in 0..<counts[m] { all.append((m, j)) } }
        all.sort { a, b in
            let sa = adjusted[a.head][a.row], sb = adjusted[b.head][b.row]
            let pa = positions[a.head][a.row], pb = positions[b.head][b.row]
            if sa == sb && pa == pb { return a.head < b.head }
            return KVSelection.ranksBefore(sa, pa, sb, pb)
        }
        var keep = [[Int]](repeating: [], count: hk)
        for e in all.prefix(total) { keep[e.head].append(e.row) }
        return keep.indices.map { m in keep[m].count == counts[m] ? nil : keep[m].sorted() }
    }

    /// Entries a head keeps on its own scores before the joint selection (the safeguard), for a
    /// uniform count `n`.
    func safeguardCount(uniformCount n: Int) -> Int { Int(Double(n) * alpha) }

    /// The safeguard: a head's best `alpha` x (its uniform count) rows are kept on its own scores.
    public func scoreOnlyCount(head: Int, context: KVLayerContext) -> Int {
        safeguardCount(uniformCount: budget.keptCount(length: context.count(head: head), cache: context.cache))
    }

    /// The budget's fixed capacity (`.tokens`, `.bytes`).
    public func decodeCapacity(context: KVLayerContext) -> Int? { budget.fixedCapacity(cache: context.cache) }
}
