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
    static let formats: [KVEntryFormat] = [.rows(.f16)] + KVEntryFormat.supported.filter { $0 != .rows(.f16) }

    /// The targets of the quantized-cache issue: decode attention tokens/s at 32K over f16.
    static let targets: [KVEntryFormat: Double] = [.rows(.q8_0): 1.5, .rows(.q4_0): 2, .kivi(bits: 2): 3]

    static func run(_ ctx: BenchContext) {
        do {
            let model = try LlamaModel(path: "default", mode: .fast)
            try bytesPerToken(ctx, shape: model.shape)
            try attention(ctx, shape: model.shape)
            try decode(ctx, model: model)
        } catch {
            FileHandle.standardError.write(Data("kvbench quant: \(error)\n".utf8))
        }
    }

    /// A cache of `format` holding `tokens` random entries in every layer and KV head (KIVI: its
    /// residual compacted, as after a prompt; ZipCache: every 1024-entry block quantized with a
    /// random 60 % salient).
    static func filledCache(shape: KVModelShape, layers: Int, format: KVEntryFormat, tokens: Int) throws -> KVCache {
        let cache = try KVCache(layers: layers, kvHeads: shape.kvHeads, headDim: shape.headDim, keys: format, values: format)
        let width = shape.kvHeads * shape.headDim
        var rng = SplitMix(seed: 11)
        let chunk = 1024
        var start = 0
        while start < tokens {
            let n = min(chunk, tokens - start)
            let keys = (0..<(n * width)).map { _ in rng.nextFloat() * 2 - 1 }
            let values = (0..<(n * width)).map { _ in rng.nextFloat() * 2 - 1 }
            let positions = (start..<(start + n)).map(Int32.init)
            for layer in 0..<layers {
                try cache.append(layer: layer, keys: keys, values: values, positions: positions)
                guard format == .zipCache else { continue }
                for m in 0..<shape.kvHeads {  // ZipCache's default split: 60 % of each block salient
                    try cache.quantizeBlock(layer: layer, head: m, salient: (0..<n).map { _ in rng.nextFloat() >= 0.4 })
                }
            }
            start += n
        }
        for layer in 0..<layers { cache.compactResidual(layer: layer) }
        return cache
    }

    /// `KVCache.byteCount` per token of a cache holding 4096 tokens in every layer and KV head, next
    /// to what the format's layout says it must be (KIVI: groups of quantized entries with their
    /// parameters, plus the f16 residual).
    static func bytesPerToken(_ ctx: BenchContext, shape: KVModelShape) throws {
        let tokens = 4096
        let d = shape.headDim
        for format in formats {
            let cache = try filledCache(shape: shape, layers: shape.layers, format: format, tokens: tokens)
            let perToken = Double(cache.byteCount - cache.metadataBytes) / Double(tokens)
            let heads = shape.layers * shape.kvHeads
            let layout: Int
            let detail: String
            if format.isKIVI, case .kivi(let bits) = format {
                let residual = cache.residualLength + (tokens - cache.residualLength) % KVCache.kiviGroupSize
                let packed = tokens - residual, groups = packed / KVCache.kiviGroupSize
                let code = d * bits / 8, value = (bits == 2 ? ElementType.q2_1 : .q4_1).byteCount(elements: d)
                let f16 = ElementType.f16.byteCount(elements: d)
                layout = heads * (packed * (code + value + 4) + groups * (4 * d + 4) + residual * (2 * f16 + 4))
                detail = "\(heads) heads x (\(packed) x (K codes \(code) + V \(value) + position 4) + \(groups) groups x "
                    + "\(4 * d + 4) + residual \(residual) x \(2 * f16 + 4))"
            } else if format == .zipCache {
                let f16 = ElementType.f16.byteCount(elements: d)
                var total = 0, groups = 0
                for l in 0..<shape.layers {
                    for parts in cache.headParts(layer: l) {
                        total += parts.last!.count * (2 * f16 + 4) + (parts.count > 1 ? 4 * d : 0)
                        for v in parts.dropLast() {
                            let bits = v.keyGroups!.bits
                            total += v.count * (d * bits / 8 + (bits == 4 ? ElementType.q4_1 : .q2_1).byteCount(elements: d) + 8)
                                + v.keyGroups!.groupCount * (4 * d + 4)
                            groups += v.keyGroups!.groupCount
                        }
                    }
                }
                layout = total
                detail = "per entry salient K \(d / 2) + V \(ElementType.q4_1.byteCount(elements: d)) or unimportant K \(d / 4) + V "
                    + "\(ElementType.q2_1.byteCount(elements: d)), + position 4 + head row 4; \(groups) groups x \(4 * d + 4); "
                    + "\(heads) heads x channel scales \(4 * d)"
            } else {
                let row = format.benchRowType.byteCount(elements: d)
                layout = heads * tokens * (2 * row + 4)
                detail = "\(heads) heads x \(tokens) x (K \(row) + V \(row) + position 4)"
            }
            ctx.addValue(group: "quant", name: "bytes per token \(format)", threads: 0,
                         value: perToken, unit: "B/tok", timing: Timing(min: 0, median: 0),
                         note: String(format: "%.3fx f16's bytes; %@ = %d%@",
                                      perToken / Double(heads * (4 * d + 4)), detail, layout,
                                      Double(layout) == perToken * Double(tokens) ? "" : " MISMATCH"))
        }
    }

    /// Decode attention of one token over every layer's cache at 8K and 32K tokens (the caches
    /// together far exceed the CPU caches, as in a real decode step), each format alternating with
    /// f16 so that their ratio comes from the same minutes. The caches are real `KVCache`s (KIVI:
    /// its quantized part and residual, merged by the attention).
    static func attention(_ ctx: BenchContext, shape: KVModelShape) throws {
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
            let reference = try filledCache(shape: shape, layers: layers, format: .rows(.f16), tokens: n)
            for threads in ctx.options.threads {
                let pool = threads > 1 ? ctx.pool(threads) : nil
                let step = { (cache: KVCache) in
                    for l in 0..<layers {
                        Attention.decode(query: query, heads: heads, headDim: d, parts: cache.headParts(layer: l),
                                         scale: scale, output: output, pool: pool)
                    }
                }
                for format in formats {
                    let cache = format == .rows(.f16) ? reference
                        : try filledCache(shape: shape, layers: layers, format: format, tokens: n)
                    let (t, f16) = ctx.measure({ step(cache) }, alternatingWith: { step(reference) })
                    let speedup = f16.min / t.min
                    let bytes = cache.byteCount - cache.metadataBytes
                    var note = String(format: "%.2fx f16 (f16 %.0f tok/s in alternation); %.1f GB/s of K+V over %d layers",
                                      speedup, Double(n) / f16.min, Double(bytes) / t.min / 1e9, layers)
                    if n == 32768, let least = targets[format] {
                        note += "; " + BenchContext.target(String(format: ">= %.1fx f16", least), met: speedup >= least)
                    }
                    ctx.addValue(group: "quant", name: "decode attention \(format) \(n / 1024)K tok",
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
                let session = try LlamaSession(model: model, keys: type, values: type, chunkSize: 512,
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
                let name = type.description
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

extension KVEntryFormat {
    /// The element type of a row format's rows (f16 for KIVI, whose layout the benchmark spells out).
    var benchRowType: ElementType {
        if case .rows(let t) = self { return t }
        return .f16
    }
}
