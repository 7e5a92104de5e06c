import KVCompress
import KVCore

/// A policy that evicts nothing and accumulates the Gram matrix `sum q q^T`, the sum and the count
/// of queries over every prompt token at a position `>= skipPositions`: per KV head over its group's
/// post-RoPE queries (``QFilterCalibration``), or per query head over its pre-RoPE queries
/// (``ExpectedAttentionCalibration``). Read ``totals`` after the prefills (they add up across them).
struct QueryStatisticsProbe: KVCachePolicy {
    /// The sums, filled by the hooks (one sequence at a time, the compressor's thread).
    final class Totals: @unchecked Sendable {
        var grams: [[[Double]]]
        var sums: [[[Double]]]
        var counts: [[Int]]
        init(layers: Int, groups: Int, headDim d: Int) {
            grams = Array(repeating: Array(repeating: Array(repeating: 0, count: d * d), count: groups), count: layers)
            sums = Array(repeating: Array(repeating: Array(repeating: 0, count: d), count: groups), count: layers)
            counts = Array(repeating: Array(repeating: 0, count: groups), count: layers)
        }
    }

    let totals: Totals
    /// Per query head over pre-RoPE queries (true) or per KV head over post-RoPE ones (false).
    let perQueryHead: Bool
    /// Tokens at earlier positions are not counted.
    let skipPositions: Int

    func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
        let (l, d, g) = (context.layer, context.shape.headDim, context.shape.groupSize)
        guard let source = perQueryHead ? context.preRoPEQueries : context.queries else {
            throw .invalidParameter(name: "preRoPEQueries", value: "nil", expected: "the pre-RoPE queries")
        }
        let tokens = (0..<context.tokenCount).filter { Int(context.positions[$0]) >= skipPositions }
        for group in totals.sums[l].indices {
            var gram = totals.grams[l][group], sum = totals.sums[l][group]
            let heads = perQueryHead ? group..<(group + 1) : (group * g)..<((group + 1) * g)
            for t in tokens {
                for h in heads {
                    let q = source + t * context.queryTokenStride + h * d
                    for i in 0..<d {
                        let qi = Double(q[i])
                        sum[i] += qi
                        for j in i..<d { gram[i * d + j] += qi * Double(q[j]) }
                    }
                }
            }
            for i in 0..<d { for j in 0..<i { gram[i * d + j] = gram[j * d + i] } }
            totals.grams[l][group] = gram
            totals.sums[l][group] = sum
            totals.counts[l][group] += tokens.count * heads.count
        }
    }

    var name: String { "QueryStatisticsProbe" }
}
