import KVCompress
import KVCore

/// Finds RazorAttention's retrieval heads for a model (`kvcompress calibrate razor`): one prefill of
/// BOS followed by a random token sequence repeated `repeats` times, the echo and induction
/// attention mass of every query head (``RazorHeadProbe``), each score the mass over the whole
/// `N x N` attention divided by `N^2` (the specification's mean over the masked matrix), a KV head
/// scored by the maximum over its query heads, then ``RazorHeads/init(echo:induction:echoRatio:inductionRatio:)``.
///
/// Defaults follow golden-stick (token ids uniform in `10000..<12500`, 4 repetitions, 1 % echo and
/// 14 % induction heads) except the period: 1024 tokens instead of 2500, so that the sequence
/// (4097 tokens) fits a 4K-8K context and one CPU pass takes seconds; the random tokens are seeded.
public struct RazorCalibration: Sendable {
    /// Tokens in one period of the random sequence.
    public var period = 1024
    /// Repetitions of the period.
    public var repeats = 4
    /// The token ids drawn from (uniformly).
    public var tokenRange: Range<Int32> = 10_000..<12_500
    /// Seed of the random sequence.
    public var seed: UInt64 = 0
    /// Fraction of all heads taken by echo score.
    public var echoRatio = 0.01
    /// Fraction of all heads taken by induction score.
    public var inductionRatio = 0.14

    /// The defaults.
    public init() {}

    /// The calibration sequence for a model: BOS, then `repeats` copies of `period` random ids.
    public func sequence(bos: Int32) -> [Int32] {
        var rng = SeededGenerator(seed: seed)
        let period = (0..<self.period).map { _ in Int32.random(in: tokenRange, using: &rng) }
        return [bos] + Array(repeating: period, count: repeats).flatMap { $0 }
    }

    /// Runs the calibration on `model`.
    /// - Throws: `KVError.invalidParameter` for a period below 2, fewer than 2 repeats, token ids
    ///   outside the vocabulary or a sequence longer than the model's context; whatever the
    ///   prefill throws (`.cancelled`).
    public func run(model: LlamaModel, pool: ThreadPool = .shared,
                    progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws(KVError) -> RazorHeads {
        guard period >= 2 else { throw .invalidParameter(name: "period", value: "\(period)", expected: ">= 2") }
        guard repeats >= 2 else { throw .invalidParameter(name: "repeats", value: "\(repeats)", expected: ">= 2") }
        let c = model.config
        guard tokenRange.lowerBound >= 0, Int(tokenRange.upperBound) <= c.vocab, !tokenRange.isEmpty else {
            throw .invalidParameter(name: "tokenRange", value: "\(tokenRange)", expected: "ids within the vocabulary 0..<\(c.vocab)")
        }
        let ids = sequence(bos: model.tokenizer.bosTokenID)
        guard ids.count <= c.contextLength else {
            throw .invalidParameter(name: "period", value: "\(period)",
                                    expected: "1 + period x repeats <= the context length \(c.contextLength)")
        }
        let totals = RazorHeadProbe.Totals(layers: c.layers, heads: c.heads)
        let session = try LlamaSession(model: model, policy: RazorHeadProbe(period: period, totals: totals), pool: pool)
        try session.prefillChunks(ids) { (chunk: Range<Int>) throws(KVError) in progress(chunk.upperBound, ids.count) }
        let n2 = Double(ids.count) * Double(ids.count)
        func perKVHead(_ sums: [[Double]]) throws(KVError) -> KVHeadScores {
            try KVHeadScores(sums.map { row in
                (0..<c.kvHeads).map { m in Float(row[(m * c.groupSize)..<((m + 1) * c.groupSize)].max()! / n2) }
            })
        }
        return try RazorHeads(echo: try perKVHead(totals.echo), induction: try perKVHead(totals.induction),
                              echoRatio: echoRatio, inductionRatio: inductionRatio)
    }
}
