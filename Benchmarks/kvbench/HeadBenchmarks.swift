import Foundation
import KVCompress
import KVModel

extension BenchGroup {
    /// `kvbench heads`: the retrieval-head policies' speed on the default model, beside the full
    /// cache in the same run.
    static let heads = BenchGroup(
        name: "heads",
        summary: "DuoAttention (half of the heads streaming) vs the full cache: prefill tok/s at 8000 tokens, "
            + "decode tok/s at context 8000, cache bytes; RazorAttention at 25 % of the bytes",
        run: { ctx in HeadBenchmarks.run(ctx) })
}

enum HeadBenchmarks {
    static func run(_ ctx: BenchContext) {
        do {
            let model = try LlamaModel(path: "default", mode: .fast)
            let n = ctx.options.quick ? 1024 : 8000
            let steps = ctx.options.quick ? 4 : 32
            let ids = try ModelBenchmarks.tokens(model, count: n + steps)
            let patterns = HeadPatternFiles.defaultModel
            let duo = try DuoAttention(pattern: try patterns.requireDuo(), sparsity: 0.5)
            for threads in ctx.options.threads {
                let pool = ctx.pool(threads)
                // Alternate the full cache and DuoAttention, two rounds, keeping each one's best.
                var best: [String: (prefill: Double, decode: Timing, bytes: Int)] = [:]
                let policies: [(String, any KVCachePolicy)] = [
                    ("full", FullCache()), ("DuoAttention", duo),
                    ("RazorAttention", try KVPolicyCatalog.make("RazorAttention", budget: .compressionRatio(0.75),
                                                                schedule: .prefillAndDecode, patterns: patterns)),
                ]
                for _ in 0..<2 {
                    for (name, policy) in policies {
                        let session = try LlamaSession(model: model, policy: policy, chunkSize: 512, pool: pool)
                        let clock = ContinuousClock()
                        let t0 = clock.now
                        var logits = try session.prefill(Array(ids[0..<n]))
                        let prefill = (clock.now - t0).benchSeconds
                        var times: [Double] = []
                        for i in 0..<steps {
                            _ = logits
                            let t = clock.now
                            logits = try session.decode(ids[n + i])
                            times.append((clock.now - t).benchSeconds)
                        }
                        let decode = Timing(samples: times)
                        let old = best[name]
                        best[name] = (min(prefill, old?.prefill ?? .infinity),
                                      old.map { $0.decode.median <= decode.median ? $0.decode : decode } ?? decode,
                                      session.cache.byteCount)
                    }
                }
                let full = best["full"]!
                for (name, _) in policies {
                    let r = best[name]!
                    let prefillRatio = full.prefill / r.prefill, decodeRatio = full.decode.median / r.decode.median
                    let isDuo = name == "DuoAttention"
                    ctx.addValue(group: "heads", name: "\(name) prefill \(n) tok", threads: threads, value: Double(n) / r.prefill,
                                 unit: "tok/s", timing: Timing(min: r.prefill, median: r.prefill),
                                 note: name == "full" ? "chunks of 512" : String(format: "%.2fx full", prefillRatio)
                                    + (isDuo ? "; " + BenchContext.target(">= 1.3x", met: prefillRatio >= 1.3) : ""))
                    ctx.addValue(group: "heads", name: "\(name) decode at context \(n)", threads: threads,
                                 value: 1 / r.decode.median, unit: "tok/s", timing: r.decode,
                                 note: String(format: "cache %.1f MB (%.0f %% of full)", Double(r.bytes) / 1e6,
                                              100 * Double(r.bytes) / Double(full.bytes))
                                    + (name == "full" ? "" : String(format: ", %.2fx full", decodeRatio))
                                    + (isDuo ? "; " + BenchContext.target(">= 1.3x", met: decodeRatio >= 1.3) : ""))
                }
            }
        } catch {
            FileHandle.standardError.write(Data("kvbench heads: \(error)\n".utf8))
        }
    }
}
