/// Scores each span of `chunkLength` consecutive rows with a fresh inner scorer that sees only that
/// span (``KVLayerContext``'s rows copied into a cache of their own), so every part of a long prompt
/// is ranked against its neighbours, not against the whole prompt. The inner scorer sees the hook's
/// queries (for a one-pass prefill, the whole prompt's; for a chunked one, the last host chunk's).
/// When the layer's heads hold different numbers of rows (decode-time re-compression) the inner
/// scorer scores the whole layer instead.
///
/// Reference: NVIDIA/kvpress `chunk_press.py` (`ChunkPress`, after FINCH). kvpress scores each chunk
/// with the inner press's own window queries (the chunk's last tokens) rotated at the positions of
/// the end of the whole prompt, a simulation rather than a prompt of its own; for query-free inner
/// scorers (Knorm, KeyDiff, CUR, ...) the two agree exactly.
public struct ChunkScorer<Inner: KVScorer>: KVStatelessScorer {
    /// The scorer of each span.
    public let inner: Inner
    /// Rows per span (kvpress default 1024).
    public let chunkLength: Int

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for `chunkLength < 1`.
    public init(inner: Inner, chunkLength: Int = 1024) throws(KVError) {
        guard chunkLength >= 1 else { throw .invalidParameter(name: "chunkLength", value: "\(chunkLength)", expected: ">= 1") }
        self.inner = inner
        self.chunkLength = chunkLength
    }

    /// The inner scorer's scores of each span, side by side.
    public func scores(_ context: KVLayerContext) throws(KVError) -> KVScores {
        let counts = context.counts
        guard let n = counts.first, counts.allSatisfy({ $0 == n }) else {
            var state = inner.makeState(shape: context.shape)
            try inner.observe(context, state: &state)
            return try inner.scores(context, state: &state)
        }
        var heads = [[Float]](repeating: [], count: counts.count)
        for start in stride(from: 0, to: n, by: chunkLength) {
            let span = Array(start..<min(start + chunkLength, n))
            let part = try context.scores(of: Array(repeating: span, count: counts.count), by: inner)
            for m in heads.indices { heads[m] += part.heads[m] }
        }
        return KVScores(heads: heads)
    }
}
