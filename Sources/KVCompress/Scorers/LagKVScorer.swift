import Foundation

/// LagKV: each partition of `lag` tokens is judged against the partition after it, needing no
/// queries or attention: per token, its key and value are min-max normalized per channel by the next
/// partition's range, the spread (standard deviation over channels) of that normalized vector goes
/// through a softmax over the partition, keys' and values' softmaxes are averaged, and the token's
/// score is its rank inside its partition divided by `lag` (so every partition loses the same share).
///
/// The first `sinks` tokens and the tail (the last complete partition, which has no successor, and
/// the incomplete remainder) score 1; a prompt shorter than `sinks + 2 lag` scores a ramp `(j - sinks)
/// / (n - sinks)` after its sinks, so the newest tokens stay. Ranks tie across partitions by design
/// (each partition has one token per rank): kvpress breaks those ties in no defined order, this
/// library by position (the later token first). kvpress's `cross_scoring` option (the averaged
/// softmax itself as the score) is `crossScoring`.
///
/// Paper: Liang et al., "LagKV: Lag-Relative Information of the KV Cache Tells Which Tokens Are
/// Important" (arXiv 2504.04704). Reference: NVIDIA/kvpress `lagkv_press.py`.
public struct LagKVScorer: KVStatelessScorer {
    /// Tokens always kept at the start (kvpress default 4).
    public let sinks: Int
    /// Tokens per partition (kvpress default 128).
    public let lag: Int
    /// Scores are the averaged softmaxes instead of ranks (kvpress `cross_scoring`, default false).
    public let crossScoring: Bool

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for negative sinks or a partition below 2 tokens.
    public init(sinks: Int = 4, lag: Int = 128, crossScoring: Bool = false) throws(KVError) {
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        guard lag >= 2 else { throw .invalidParameter(name: "lag", value: "\(lag)", expected: ">= 2 tokens per partition") }
        self.sinks = sinks
        self.lag = lag
        self.crossScoring = crossScoring
    }

    /// Every row's score.
    public func scores(_ context: KVLayerContext) -> KVScores {
        let d = context.shape.headDim
        return KVScores(heads: (0..<context.shape.kvHeads).map { m in
            let s = context.cache.head(context.layer, m)
            let n = s.count
            guard n >= sinks + 2 * lag else {
                return (0..<n).map { j in j < sinks ? 1 : Float(j - sinks) / Float(n - sinks) }
            }
            let end = sinks + (n - sinks) / lag * lag
            let keys = s.keys(sinks..<end), values = s.values(sinks..<end)
            let partitions = (end - sinks) / lag - 1  // the last complete one only serves as reference
            let ks = spread(keys, partitions: partitions, d: d), vs = spread(values, partitions: partitions, d: d)
            var scores = [Float](repeating: 1, count: n)
            for p in 0..<partitions {
                let avg = (0..<lag).map { (ks[p * lag + $0] + vs[p * lag + $0]) / 2 }
                if crossScoring {
                    for t in 0..<lag { scores[sinks + p * lag + t] = avg[t] }
                } else {
                    let order = avg.indices.sorted { avg[$0] != avg[$1] ? avg[$0] < avg[$1] : $0 < $1 }
                    for (rank, t) in order.enumerated() { scores[sinks + p * lag + t] = Float(rank) / Float(lag) }
                }
            }
            return scores
        })
    }

    /// Per token of the first `partitions` partitions: softmax over its partition of the standard
    /// deviation (over channels, unbiased) of the token min-max normalized by the next partition.
    private func spread(_ x: [Float], partitions: Int, d: Int) -> [Float] {
        var out = [Float](repeating: 0, count: partitions * lag)
        for p in 0..<partitions {
            var lo = [Float](repeating: .infinity, count: d), hi = [Float](repeating: -.infinity, count: d)
            for t in 0..<lag {
                for c in 0..<d {
                    let r = x[((p + 1) * lag + t) * d + c]
                    lo[c] = min(lo[c], r)
                    hi[c] = max(hi[c], r)
                }
            }
            var std = [Float](repeating: 0, count: lag)
            for t in 0..<lag {
                let row = (0..<d).map { c in (x[(p * lag + t) * d + c] - lo[c]) / (hi[c] - lo[c]) }
                let mean = row.reduce(0, +) / Float(d)
                std[t] = (row.reduce(Float(0)) { $0 + ($1 - mean) * ($1 - mean) } / Float(d - 1)).squareRoot()
            }
            let mx = std.max()!
            let e = std.map { expf($0 - mx) }
            let sum = e.reduce(0, +)
            for t in 0..<lag { out[p * lag + t] = e[t] / sum }
        }
        return out
    }
}
