import Foundation
import KVCompress
import KVModel

extension BenchGroup {
    /// `kvbench model`: prefill and decode tokens/s of the default model (fast mode, full f16 cache),
    /// next to llama.cpp's figures for this machine class (DESIGN.md) or, with KVBENCH_LLAMA_BENCH,
    /// llama-bench's measured in the same run, and peak RSS.
    static let model = BenchGroup(
        name: "model",
        summary: "default model: prefill tok/s at 512/2048/8000, decode tok/s at context 512/2048/8000, RSS",
        run: { ctx in ModelBenchmarks.run(ctx) })
}

/// llama.cpp figures on this machine class, 2 threads, f16 cache (DESIGN.md: llama-cpp-python rows).
enum LlamaCppReference {
    static let prefill: [Int: Double] = [512: 242, 2048: 202, 8000: 125]
    static let decode: [Int: Double] = [512: 96, 2048: 62, 8000: 25]
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
            for threads in ctx.options.threads {
                let pool = ctx.pool(threads)
                for n in lengths {
                    let ids = try tokens(model, count: n + decodeSteps)
                    let session = try LlamaSession(model: model, chunkSize: 512, pool: pool)
                    let clock = ContinuousClock()
                    let t0 = clock.now
                    var logits = try session.prefill(Array(ids[0..<n]))
                    let prefill = (clock.now - t0).benchSeconds
                    let ref = LlamaCppReference.prefill[n].map { String(format: "llama.cpp 2 thr: %.0f tok/s", $0) }
                    ctx.addValue(group: "model", name: "prefill \(n) tok", threads: threads, value: Double(n) / prefill,
                                 unit: "tok/s", timing: Timing(min: prefill, median: prefill), note: ref)
                    var times: [Double] = []
                    for i in 0..<decodeSteps {
                        _ = logits
                        let t = clock.now
                        logits = try session.decode(ids[n + i])
                        times.append((clock.now - t).benchSeconds)
                    }
                    let timing = Timing(samples: times)
                    let dref = LlamaCppReference.decode[n].map { String(format: "llama.cpp 2 thr: %.0f tok/s", $0) }
                    ctx.addValue(group: "model", name: "decode at context \(n)", threads: threads, value: 1 / timing.median,
                                 unit: "tok/s", timing: timing,
                                 note: [dref, "cache \(session.cache.byteCount / 1_000_000) MB"].compactMap { $0 }.joined(separator: ", "))
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
            LlamaBench.run(ctx, modelPath: try ModelStore.defaultModelURL().path, lengths: lengths,
                           decodeSteps: decodeSteps, threads: ctx.options.threads)
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

extension Duration {
    /// Seconds as a Double.
    var benchSeconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
