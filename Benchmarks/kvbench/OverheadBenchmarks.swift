import Foundation
import KVCompress
import KVModel

extension BenchGroup {
    /// `kvbench overhead`: only the scoring-overhead rows of `kvbench policies` (prefill time of the
    /// scoring policies over the full cache's at 2048 tokens), plus the attention kernel's own cost
    /// of column sums, for quick before/after comparisons.
    static let overhead = BenchGroup(
        name: "overhead",
        summary: "scoring overhead of SnapKV, TOVA, Knorm, H2O, ObservedAttention: % of prefill at 2048 tokens",
        run: { ctx in
            do {
                let model = try LlamaModel(path: "default", mode: .fast)
                let threads = ctx.options.threads.max() ?? 1
                try PolicyBenchmarks.scoringOverhead(ctx, model: model, pool: ctx.pool(threads), threads: threads)
                AttentionBenchmarks.columnSums(ctx, lengths: ctx.options.quick ? [256] : [2048], group: "policies")
            } catch {
                FileHandle.standardError.write(Data("kvbench overhead: \(error)\n".utf8))
            }
        })
}
