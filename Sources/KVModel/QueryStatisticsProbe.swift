import KVCompress
import KVCore

/// A policy that evicts nothing and accumulates, per layer and KV head, the Gram matrix
/// `sum q q^T` and the sum of the post-RoPE queries of the head's group over every prompt token
/// (what ``QFilterCalibration`` turns into Q-filters). Read ``totals`` after the prefill.
struct QueryStatisticsProbe: KVCachePolicy {
    /// The sums, filled by the hooks (one sequence, the compressor's thread).
    final class Totals: @unchecked Sendable {
        var grams: [[[Double]]]
        var sums: [[[Double]]]
        init(layers: Int, kvHeads: Int, headDim d: Int) {
            grams = Array(repeating: Array(repeating: Array(repeating: 0, count: d * d), count: kvHeads), count: layers)
            sums = Array(repeating: Array(repeating: Array(repeating: 0, count: d), count: kvHeads), count: layers)
        }
    }

    let totals: Totals

    func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
        let (l, d, g) = (context.layer, context.shape.headDim, context.shape.groupSize)
        for m in 0..<context.shape.kvHeads {
            var gram = totals.grams[l][m], sum = totals.sums[l][m]
            for t in 0..<context.tokenCount {
                for h in (m * g)..<((m + 1) * g) {
                    let q = context.queries + t * context.queryTokenStride + h * d
                    for i in 0..<d {
                        let qi = Double(q[i])
                        sum[i] += qi
                        for j in i..<d { gram[i * d + j] += qi * Double(q[j]) }
                    }
                }
            }
            for i in 0..<d { for j in 0..<i { gram[i * d + j] = gram[j * d + i] } }
            totals.grams[l][m] = gram
            totals.sums[l][m] = sum
        }
    }

    var name: String { "QueryStatisticsProbe" }
}
