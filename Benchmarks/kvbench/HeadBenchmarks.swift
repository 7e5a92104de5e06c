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
                    let isDuo = name == "DuoAttention" && !ctx.options.quick  // the targets are stated at 8K
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
            try cakePeak(ctx, model: model, ids: Array(ids[0..<n]))
        } catch {
            FileHandle.standardError.write(Data("kvbench heads: \(error)\n".utf8))
        }
    }

    /// CAKE at 25 % of the entries with the prompt in one pass (the reference's prefill): the cache's
    /// peak during prefill against the budget and the full cache (each layer is cut right after its
    /// own attention, so the peak is about the budget plus one layer in full).
    static func cakePeak(_ ctx: BenchContext, model: LlamaModel, ids: [Int32]) throws {
        let threads = ctx.options.threads.max() ?? 1
        let session = try LlamaSession(model: model, policy: try CAKE(budget: .compressionRatio(0.75)),
                                       chunkSize: ids.count, pool: ctx.pool(threads))
        _ = try session.prefill(ids)
        let cache = session.cache
        let full = cache.layers * cache.kvHeads * ids.count * cache.bytesPerEntry + cache.metadataBytes
        let layer = cache.kvHeads * ids.count * cache.bytesPerEntry
        let bound = full / 4 + layer
        ctx.addValue(group: "heads", name: "CAKE 25 % peak cache in prefill \(ids.count) tok", threads: threads,
                     value: Double(cache.peakByteCount) / 1e6, unit: "MB", timing: Timing(min: 0, median: 0),
                     note: String(format: "held after the prompt %.1f MB, full cache %.1f MB; ", Double(cache.byteCount) / 1e6,
                                  Double(full) / 1e6)
                        + BenchContext.target(String(format: "<= budget + one layer = %.1f MB", Double(bound) / 1e6),
                                              met: cache.peakByteCount <= bound))
    }
}
