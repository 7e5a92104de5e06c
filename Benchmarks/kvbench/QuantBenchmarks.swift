import Foundation
import KVCompress
import KVCore
import KVModel

extension BenchGroup {
    /// `kvbench quant`: the cache formats side by side: bytes per token, decode attention over every
    /// layer at 8K and 32K tokens against f16 in the same run, model decode at context 8000, and
    /// llama.cpp's quantized caches when KVBENCH_LLAMA_BENCH names llama-bench.
    static let quant = BenchGroup(
        name: "quant",
        summary: "cache formats: bytes per token, decode attention tok/s at 8K/32K against f16 (every layer, from "
            + "memory), model decode tok/s at context 8000 per format, llama.cpp's q8_0/q4_0 caches",
        run: { ctx in QuantBenchmarks.run(ctx) })
}

/// The rows of `kvbench quant`.
enum QuantBenchmarks {
    /// Every cache format, f16 (the reference of the ratios) first.
    static let formats: [ElementType] = [.f16] + KVCache.supportedTypes.filter { $0 != .f16 }

    /// The targets of the quantized-cache issue: decode attention tokens/s at 32K over f16.
    static let targets: [ElementType: Double] = [.q8_0: 1.5, .q4_0: 2]

    static func run(_ ctx: BenchContext) {
        do {
            let model = try LlamaModel(path: "default", mode: .fast)
            bytesPerToken(ctx, shape: model.shape)
            attention(ctx, shape: model.shape)
            try decode(ctx, model: model)
        } catch {
            FileHandle.standardError.write(Data("kvbench quant: \(error)\n".utf8))
        }
    }

    /// `KVCache.byteCount` per token of a cache holding 256 tokens in every layer and KV head, next to
    /// what the format's layout says it must be.
    static func bytesPerToken(_ ctx: BenchContext, shape: KVModelShape) {
        let tokens = 256
        let width = shape.kvHeads * shape.headDim
        var rng = SplitMix(seed: 11)
        let data = (0..<(tokens * width)).map { _ in rng.nextFloat() * 2 - 1 }
        let positions = (0..<tokens).map(Int32.init)
        for type in formats {
            guard let cache = try? KVCache(shape: shape, elementType: type) else { continue }
            for layer in 0..<shape.layers {
                try? cache.append(layer: layer, keys: data, values: data, positions: positions)
            }
            let perToken = Double(cache.byteCount - cache.metadataBytes) / Double(tokens)
            let row = type.byteCount(elements: shape.headDim)
            let layout = shape.layers * shape.kvHeads * (2 * row + MemoryLayout<Int32>.size)
            ctx.addValue(group: "quant", name: "bytes per token \(type.description.lowercased())", threads: 0,
                         value: perToken, unit: "B/tok", timing: Timing(min: 0, median: 0),
                         note: String(format: "%.2fx f16's bytes; %d layers x %d KV heads x (K %d + V %d + position 4) = %d%@",
                                      perToken / Double(shape.layers * shape.kvHeads * (4 * shape.headDim + 4)),
                                      shape.layers, shape.kvHeads, row, row, layout,
                                      Double(layout) == perToken ? "" : " MISMATCH"))
        }
    }

    /// Decode attention of one token over every layer's cache at 8K and 32K tokens (the caches
    /// together far exceed the CPU caches, as in a real decode step), each format alternating with
    /// f16 so that their ratio comes from the same minutes.
    static func attention(_ ctx: BenchContext, shape: KVModelShape) {
        let heads = shape.heads, d = shape.headDim
        let lengths = ctx.options.quick ? [1024] : [8192, 32768]
        let layers = ctx.options.quick ? 2 : shape.layers
        let query = UnsafeMutablePointer<Float>.allocate(capacity: heads * d)
        defer { query.deallocate() }
        var rng = SplitMix(seed: 3)
        for i in 0..<(heads * d) { query[i] = rng.nextFloat() - 0.5 }
        let output = UnsafeMutablePointer<Float>.allocate(capacity: heads * d)
        defer { output.deallocate() }
        let scale = 1 / Float(d).squareRoot()
        for n in lengths {
            let make = { (t: ElementType) in (0..<layers).map { _ in SyntheticHeads(kvHeads: shape.kvHeads, count: n, headDim: d, type: t) } }
            let reference = make(.f16)
            for threads in ctx.options.threads {
                let pool = threads > 1 ? ctx.pool(threads) : nil
                let step = { (caches: [SyntheticHeads]) in
                    for c in caches {
                        Attention.decode(query: query, heads: heads, headDim: d, kv: c.views, scale: scale, output: output,
                                         pool: pool)
                    }
                }
                for type in formats {
                    let caches = type == .f16 ? reference : make(type)
                    let (t, f16) = ctx.measure({ step(caches) }, alternatingWith: { step(reference) })
                    let speedup = f16.min / t.min
                    let bytes = caches.reduce(0) { $0 + $1.bytes }
                    var note = String(format: "%.2fx f16 (f16 %.0f tok/s in alternation); %.1f GB/s of K+V over %d layers",
                                      speedup, Double(n) / f16.min, Double(bytes) / t.min / 1e9, layers)
                    if n == 32768, let least = targets[type] {
                        note += "; " + BenchContext.target(String(format: ">= %.1fx f16", least), met: speedup >= least)
                    }
                    ctx.addValue(group: "quant", name: "decode attention \(type.description.lowercased()) \(n / 1024)K tok",
                                 threads: threads, value: Double(n) / t.min, unit: "tok/s", timing: t, note: note)
                }
            }
        }
    }

    /// Model decode tok/s at context 8000 (256 with --quick; after 2 untimed steps) per format, and llama.cpp's decode at
    /// the same depth with its f16, q8_0 and q4_0 caches (flash attention on, which a quantized V
    /// cache needs; with the largest thread count only, as its runs prefill the context first and
    /// take minutes each) when KVBENCH_LLAMA_BENCH names llama-bench.
    static func decode(_ ctx: BenchContext, model: LlamaModel) throws {
        let context = ctx.options.quick ? 256 : 8000
        let steps = ctx.options.quick ? 4 : 16
        let warmUp = 2
        let ids = try ModelBenchmarks.tokens(model, count: context + warmUp + steps)
        var ours: [String: Double] = [:]
        for threads in ctx.options.threads {
            for type in formats {
                let session = try LlamaSession(model: model, keyType: type, valueType: type, chunkSize: 512,
                                               pool: ctx.pool(threads))
                _ = try session.prefill(Array(ids[0..<context]))
                for i in 0..<warmUp { _ = try session.decode(ids[context + i]) }  // untimed: first touches
                var times: [Double] = []
                let clock = ContinuousClock()
                for i in 0..<steps {
                    let t0 = clock.now
                    _ = try session.decode(ids[context + warmUp + i])
                    times.append((clock.now - t0).benchSeconds)
                }
                let timing = Timing(samples: times)
                let name = type.description.lowercased()
                ours["\(name)|\(threads)"] = 1 / timing.median
                let f16 = ours["f16|\(threads)"].map { String(format: "%.2fx f16", 1 / timing.median / $0) }
                ctx.addDecode(group: "quant", name: "model decode at context \(context), \(name) cache", threads: threads,
                              timing: timing, weightBytes: model.weightBytes, cacheBytes: session.cache.byteCount,
                              note: f16)
            }
        }
        guard let binary = LlamaBench.binary else { return }
        for cacheType in ["f16", "q8_0", "q4_0"] {
            let figures = LlamaBench.measure(binary: binary, modelPath: try ModelStore.defaultModelURL().path,
                                             lengths: [context], decodeSteps: steps,
                                             threads: [ctx.options.threads.max() ?? 1],
                                             flashAttention: [true], cacheType: cacheType, prefill: false) {
                if !ctx.options.json { print("quant: " + $0) }
            }
            for f in figures {
                let ratio = ours["\(cacheType)|\(f.threads)"].map { String(format: "; KVCompress / llama.cpp = %.2fx", $0 / f.tokensPerSecond) } ?? ""
                ctx.addValue(group: "quant", name: "llama.cpp decode at context \(context), \(cacheType) cache, fa on",
                             threads: f.threads, value: f.tokensPerSecond, unit: "tok/s",
                             timing: Timing(min: 1 / f.tokensPerSecond, median: 1 / f.tokensPerSecond),
                             note: "llama-bench, same machine and run" + ratio)
            }
        }
    }
}
