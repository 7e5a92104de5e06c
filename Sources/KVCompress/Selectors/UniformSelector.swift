/// Keeps the same budget in every layer and KV head: per-head top-k of the scores (kvpress
/// `ScorerPress`). With a ratio budget a head with `L` entries keeps
/// `max(1, Int(Double(L) * (1 - ratio)))`.
public struct UniformSelector: KVSelector {
    /// The budget.
    public let budget: KVBudget

    /// Creates a uniform selector.
    /// - Throws: `KVError.invalidParameter` for an invalid budget.
    public init(budget: KVBudget) throws(KVError) { self.budget = try budget.validated() }

    /// Per-head top-k.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        let keep = context.counts.map { budget.keptCount(length: $0, cache: context.cache) }
        return try KVSelection.topK(scores, keep: keep, context: context)
    }

    /// The budget's fixed capacity (`.tokens`, `.bytes`).
    public func decodeCapacity(context: KVLayerContext) -> Int? { budget.fixedCapacity(cache: context.cache) }
}
