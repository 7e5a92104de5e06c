/// How a budget is shared between retrieval heads, which keep every entry, and streaming heads,
/// which keep a bounded set, for DuoAttention and RazorAttention: the most important heads (in
/// ranking order) become retrieval heads while the budget's bytes allow, the rest stream.
struct KVRetrievalSplit {
    /// Retrieval heads among the ranked ones (a prefix of the ranking).
    let retrievalCount: Int
    /// Entries each streaming head may hold.
    let streamingEntries: Int

    /// Splits `budget` for a prompt of `length` entries per head.
    /// - Parameters:
    ///   - rankedHeads: how many heads may be retrieval heads, most important first.
    ///   - streamingMinimum: entries a streaming head needs at least (its sinks and a window).
    ///   - streamingEntryBytes: bytes per entry of a streaming head (more than the cache's own when
    ///     its entries carry a log-count).
    ///   - fillStreaming: whether streaming heads take the bytes retrieval heads leave (RazorAttention's
    ///     buffers) or keep `streamingMinimum` (DuoAttention's fixed sinks + recent window).
    init(budget: KVBudget, length: Int, cache: KVCache, rankedHeads: Int, streamingMinimum: Int,
         streamingEntryBytes: Int, fillStreaming: Bool) {
        let heads = cache.layers * cache.kvHeads
        let entryBytes = cache.bytesPerEntry
        let total: Int
        if case .bytes(let b) = budget {
            total = b
        } else {
            total = heads * budget.keptCount(length: length, cache: cache) * entryBytes
        }
        let retrievalBytes = length * entryBytes
        let streamingBytes = min(length, streamingMinimum) * streamingEntryBytes
        // r retrieval heads fit when r * retrievalBytes + (heads - r) * streamingBytes <= total.
        var r = rankedHeads
        if retrievalBytes > streamingBytes {
            r = min(r, max(0, (total - heads * streamingBytes) / (retrievalBytes - streamingBytes)))
        }
        retrievalCount = r
        let left = max(0, total - r * retrievalBytes) / max(1, heads - r) / streamingEntryBytes
        streamingEntries = max(1, fillStreaming || left < streamingMinimum ? left : streamingMinimum)
    }
}
