/// StreamingLLM's ranking as scores: the first `sinks` rows rank highest (earliest first), then the
/// other rows by recency. Top-k of these scores keeps `{sinks} U {most recent}`.
///
/// Scores: sink row `j` gets `sinks - j` (> 0); another row `j` of a head with `n` rows gets
/// `-(n - j)` (exact in f32 below 2^24 rows). Use it to give any selector StreamingLLM's choice,
/// e.g. AdaKV's safeguard over recency. The ``StreamingLLM`` policy selects directly.
public struct RecencyScorer: KVStatelessScorer {
    /// Protected initial rows (attention sinks).
    public let sinks: Int

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for a negative sink count.
    public init(sinks: Int = 4) throws(KVError) {
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        self.sinks = sinks
    }

    /// Sink and recency scores.
    public func scores(_ context: KVLayerContext) -> KVScores {
        KVScores(heads: context.counts.map { n in
            (0..<n).map { j in j < sinks ? Float(sinks - j) : -Float(n - j) }
        })
    }
}
