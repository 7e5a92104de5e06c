/// Decides how many entries of each KV head stay, and which, given their scores (the allocator half
/// of a ``KVScoredPolicy``).
///
/// Cross-layer allocators (PyramidKV) see the layer index and the model shape in the context;
/// head-adaptive ones (AdaKV) see every head's scores of the layer at once.
public protocol KVSelector: Sendable {
    /// Rows to keep for every KV head of the context's layer (nil keeps the whole head).
    /// - Throws: a `KVError` when the scores do not fit the layer (custom selectors may throw too).
    func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?]

    /// A fixed per-head capacity to hold during decoding (for `.tokens` / `.bytes` budgets), or nil
    /// to hold what the prefill compression kept.
    func decodeCapacity(context: KVLayerContext) -> Int?
    /// How many of head `head`'s best rows (by its own scores) this selector keeps on its scores
    /// alone, whatever else decides the rest: a wrapper that re-ranks the selection
    /// (``CriticalSelector``) keeps them first. Default 0; AdaKV's safeguard.
    func scoreOnlyCount(head: Int, context: KVLayerContext) -> Int
}

extension KVSelector {
    /// Default: no fixed capacity.
    public func decodeCapacity(context: KVLayerContext) -> Int? { nil }

    /// Default: none.
    public func scoreOnlyCount(head: Int, context: KVLayerContext) -> Int { 0 }
}
