import Foundation
import KVCore

extension AttentionBenchmarks {
    /// Causal prefill attention (f16 cache, 9 query heads over 3 KV heads, head dim 64) with and
    /// without attention column sums (what H2O and ObservedAttention need): the extra time in
    /// percent of the plain attention, both measured in the same run (plain before and after).
    static func columnSums(_ context: BenchContext, lengths: [Int], group: String) {
        let scale = 1 / Float(headDim).squareRoot()
        for n in lengths {
            let problem = PrefillProblem(tokens: n, seed: 7)
            defer { withExtendedLifetime(problem) {} }  // it owns the buffers used below
            let (cache, queries, output) = (problem.cache, problem.queries, problem.output)
            let sums = UnsafeMutablePointer<Float>.allocate(capacity: kvHeads * n)
            defer { sums.deallocate() }
            for threads in context.options.threads {
                let pool = threads > 1 ? context.pool(threads) : nil
                func run(_ withSums: Bool) -> Timing {
                    context.measure {
                        Attention.prefill(queries: queries, queryCount: n, queryTokenStride: heads * headDim,
                                          queryPositions: cache.positions, heads: heads, headDim: headDim,
                                          kv: cache.views, scale: scale, output: output,
                                          columnSums: withSums ? sums : nil, columnSumStride: n, pool: pool)
                    }
                }
                let before = run(false)
                let fused = run(true)
                let after = run(false)
                let plain = min(before.min, after.min)
                context.addValue(group: group, name: "prefill attention f16 \(n) tok + column sums", threads: threads,
                                 value: 100 * (fused.min - plain) / plain, unit: "% of attention", timing: fused,
                                 note: String(format: "plain attention %.2f ms, with column sums %.2f ms",
                                              plain * 1e3, fused.min * 1e3))
            }
        }
    }
}
