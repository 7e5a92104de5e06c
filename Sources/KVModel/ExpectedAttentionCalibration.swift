import KVCompress
import KVCore

/// Computes a model's offline Expected Attention statistics (`kvcompress calibrate
/// expected-attention`), as kvpress's `expected_attention_with_stats.py` does: the text is cut into
/// `samples` consecutive pieces of `sampleCharacters` characters (kvpress: 100 booksum chapters cut
/// to 1000 characters), each prefilled alone; the pre-RoPE queries of every token but each piece's
/// first `sinks` give each query head's mean and sample covariance (divided by `N - 1`).
public struct ExpectedAttentionCalibration: Sendable {
    /// Pieces of text (default 100).
    public var samples = 100
    /// Characters per piece (default 1000).
    public var sampleCharacters = 1000
    /// Leading tokens of each piece left out (default 4).
    public var sinks = 4

    /// The defaults.
    public init() {}

    /// Runs the calibration on `model` over `text`.
    /// - Throws: `KVError.invalidParameter` for non-positive settings or a text too short for one
    ///   piece with more than `sinks` tokens; whatever the prefill throws (`.cancelled`).
    public func run(model: LlamaModel, text: String, pool: ThreadPool = .shared,
                    progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws(KVError) -> ExpectedAttentionStats {
        guard samples >= 1, sampleCharacters >= 1, sinks >= 0 else {
            throw .invalidParameter(name: "samples/sampleCharacters/sinks", value: "\(samples)/\(sampleCharacters)/\(sinks)",
                                    expected: ">= 1, >= 1, >= 0")
        }
        let c = model.config
        guard let rope = model.shape.rope else { throw .unsupportedModel("ExpectedAttention statistics need a RoPE model") }
        var pieces: [Substring] = []
        var rest = Substring(text)
        while pieces.count < samples, !rest.isEmpty {
            pieces.append(rest.prefix(sampleCharacters))
            rest = rest.dropFirst(sampleCharacters)
        }
        let totals = QueryStatisticsProbe.Totals(layers: c.layers, groups: c.heads, headDim: c.headDim)
        for (i, piece) in pieces.enumerated() {
            let ids = Array(try model.tokenizer.encode(String(piece)).prefix(c.contextLength))
            if ids.count > sinks {
                let session = try LlamaSession(model: model, policy: QueryStatisticsProbe(totals: totals, perQueryHead: true,
                                                                                          skipPositions: sinks), pool: pool)
                _ = try session.prefill(ids)
            }
            progress(i + 1, pieces.count)
        }
        let n = totals.counts[0][0]
        guard n >= 2 else {
            throw .invalidParameter(name: "text", value: "\(n) counted tokens", expected: "a text whose pieces hold more than \(sinks) tokens")
        }
        let d = c.headDim
        let means = totals.sums.map { $0.map { $0.map { $0 / Double(n) } } }
        let covariances = (0..<c.layers).map { l in
            (0..<c.heads).map { h in
                (0..<(d * d)).map { k in
                    (totals.grams[l][h][k] - Double(n) * means[l][h][k / d] * means[l][h][k % d]) / Double(n - 1)
                }
            }
        }
        return try ExpectedAttentionStats(hostMean: means, hostCovariance: covariances, pairing: rope.pairing)
    }
}
