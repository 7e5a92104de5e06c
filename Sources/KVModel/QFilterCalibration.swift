import KVCompress
import KVCore

/// Computes a model's Q-filters (`kvcompress calibrate qfilter`): prefills `tokens` tokens of a
/// text, accumulates each KV head's post-RoPE query statistics (``QueryStatisticsProbe``), and takes
/// the first right singular vector of the queries (``QFilters/init(queryGrams:querySums:)``).
public struct QFilterCalibration: Sendable {
    /// Tokens of the text used (default 4096, at most the model's context).
    public var tokens = 4096

    /// The defaults.
    public init() {}

    /// Runs the calibration on `model` over `text`.
    /// - Throws: `KVError.invalidParameter` for a text shorter than 64 tokens or `tokens < 64`;
    ///   whatever the prefill throws (`.cancelled`).
    public func run(model: LlamaModel, text: String, pool: ThreadPool = .shared,
                    progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws(KVError) -> QFilters {
        let c = model.config
        let ids = Array(try model.tokenizer.encode(text).prefix(min(tokens, c.contextLength)))
        guard tokens >= 64, ids.count >= 64 else {
            throw .invalidParameter(name: "text", value: "\(ids.count) tokens", expected: "at least 64 tokens of text")
        }
        let totals = QueryStatisticsProbe.Totals(layers: c.layers, groups: c.kvHeads, headDim: c.headDim)
        let session = try LlamaSession(model: model, policy: QueryStatisticsProbe(totals: totals, perQueryHead: false, skipPositions: 0),
                                       pool: pool)
        try session.prefillChunks(ids) { (chunk: Range<Int>) throws(KVError) in progress(chunk.upperBound, ids.count) }
        return try QFilters(queryGrams: totals.grams, querySums: totals.sums)
    }
}
