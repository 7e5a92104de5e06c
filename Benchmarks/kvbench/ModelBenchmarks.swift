import Foundation
import KVCompress
import KVModel

extension BenchGroup {
    /// `kvbench model`: prefill and decode tokens/s of the default model (fast mode, full f16 cache),
    /// with KVBENCH_LLAMA_BENCH llama-bench's figures measured in the same run, RSS, and a long
    /// StreamingLLM generation's RSS.
    static let model = BenchGroup(
        name: "model",
        summary: "default model: prefill tok/s at 512/2048/8000, decode tok/s at context 512/2048/8000, RSS, "
            + "RSS over 20,000 tokens streamed with StreamingLLM",
        run: { ctx in ModelBenchmarks.run(ctx) })
}

enum ModelBenchmarks {
    /// Deterministic token ids: the passkey prompt repeated, so attention sees natural text.
    static func tokens(_ model: LlamaModel, count: Int) throws -> [Int32] {
        let base = try model.tokenizer.encode(PasskeyPrompt().text)
        return (0..<count).map { base[$0 % base.count] }
    }

    static func run(_ ctx: BenchContext) {
        do {
            let model = try LlamaModel(path: "default", mode: .fast)
            let lengths = ctx.options.quick ? [128] : [512, 2048, 8000]
            let decodeSteps = ctx.options.quick ? 4 : 32
            let weights = model.weightBytes
            let fileBytes = (try? FileManager.default.attributesOfItem(atPath: try ModelStore.defaultModelURL().path)[.size]
                as? Int) ?? 0
            var ours: [String: Double] = [:]
            for threads in ctx.options.threads {
                let pool = ctx.pool(threads)
                for n in lengths {
                    let ids = try tokens(model, count: n + decodeSteps)
                    let session = try LlamaSession(model: model, chunkSize: 512, pool: pool)
                    let clock = ContinuousClock()
                    let t0 = clock.now
                    var logits = try session.prefill(Array(ids[0..<n]))
                    let prefill = (clock.now - t0).benchSeconds
                    ours[LlamaBench.key("prefill", n, threads)] = Double(n) / prefill
                    ctx.addValue(group: "model", name: "prefill \(n) tok", threads: threads, value: Double(n) / prefill,
                                 unit: "tok/s", timing: Timing(min: prefill, median: prefill), note: nil)
                    var times: [Double] = []
                    for i in 0..<decodeSteps {
                        _ = logits
                        let t = clock.now
                        logits = try session.decode(ids[n + i])
                        times.append((clock.now - t).benchSeconds)
                    }
                    let timing = Timing(samples: times)
                    ours[LlamaBench.key("decode", n, threads)] = 1 / timing.median
                    ctx.addDecode(group: "model", name: "decode at context \(n)", threads: threads, timing: timing,
                                  weightBytes: weights, cacheBytes: session.cache.byteCount)
                    if n == lengths.last, let rss = ProcessMemory.current {
                        // Target: RSS <= model file + cache + 100 MB (weights are mapped, not copied).
                        let budget = fileBytes + session.cache.allocatedByteCount + 100_000_000
                        ctx.addValue(group: "model", name: "RSS at context \(n)", threads: threads, value: Double(rss) / 1e6,
                                     unit: "MB", timing: Timing(min: 0, median: 0),
                                     note: BenchContext.target(String(format: "<= file+cache+100MB = %.0f MB", Double(budget) / 1e6),
                                                               met: rss <= budget))
                    }
                }
            }
            try streaming(ctx, model: model, threads: ctx.options.threads.max() ?? 1)
            LlamaBench.run(ctx, modelPath: try ModelStore.defaultModelURL().path, lengths: lengths,
                           decodeSteps: decodeSteps, threads: ctx.options.threads, ours: ours)
            if let peak = ProcessMemory.peak {
                ctx.addValue(group: "model", name: "peak RSS", threads: 0, value: Double(peak) / 1e6, unit: "MB",
                             timing: Timing(min: 0, median: 0),
                             note: "model file \(fileBytes / 1_000_000) MB, weights read per token \(weights / 1_000_000) MB")
            }
        } catch {
            FileHandle.standardError.write(Data("kvbench model: \(error)\n".utf8))
        }
    }
}

extension ModelBenchmarks {
    /// Generates 20,000 tokens (1,000 with --quick) past a short prompt with StreamingLLM (4 sinks,
    /// a window of 1020; 60 with --quick) and re-positioned keys, and reports the process's RSS
    /// after the first tenth and at the end: a bounded cache keeps it flat, past the model's
    /// context length too.
    static func streaming(_ ctx: BenchContext, model: LlamaModel, threads: Int) throws {
        let total = ctx.options.quick ? 1_000 : 20_000
        let window = ctx.options.quick ? 60 : 1020
        let session = try LlamaSession(model: model, policy: StreamingLLM(sinks: 4, window: window, repositionKeys: true),
                                       chunkSize: 512, pool: ctx.pool(threads))
        var generated = 0
        var early: Int?
        let result = try session.generate(promptTokens: try tokens(model, count: 16), maxTokens: total,
                                          stopTokens: []) { _ in
            generated += 1
            if generated == total / 10 { early = ProcessMemory.current }
        }
        guard let rss = ProcessMemory.current, let early else { return }
        let name = "StreamingLLM 4+\(window), \(total) tok"
        ctx.addValue(group: "model", name: "streaming decode, " + name, threads: threads, value: result.decodeTokensPerSecond,
                     unit: "tok/s", timing: Timing(min: result.decodeSeconds, median: result.decodeSeconds),
                     note: "keys re-positioned; next position \(session.position) (context length "
                         + "\(model.config.contextLength)), cache \(result.cacheBytes) bytes, peak \(result.peakCacheBytes)")
        ctx.addValue(group: "model", name: "streaming RSS, " + name, threads: threads, value: Double(rss) / 1e6, unit: "MB",
                     timing: Timing(min: 0, median: 0),
                     note: String(format: "after ~%d tokens: %.1f MB; growth since: %+.1f MB", total / 10,
                                  Double(early) / 1e6, Double(rss - early) / 1e6))
    }
}

extension Duration {
    /// Seconds as a Double.
    var benchSeconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
