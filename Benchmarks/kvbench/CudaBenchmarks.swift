import Foundation
import KVCompress
import KVCore
import KVModel

/// `kvbench kernels --backend cuda`: the CUDA backend against the CPU kernels and against the
/// device's own copy bandwidth, all measured in this run.
enum CudaBenchmarks {
    static func run(_ ctx: BenchContext) {
        do {
            let device = try CudaDevice.shared()
            if !ctx.options.json {
                print("cuda: \(device.name), compute \(device.computeCapability.major).\(device.computeCapability.minor), "
                      + "\(device.multiprocessors) SMs, \(device.totalMemory >> 20) MiB, driver \(device.driverVersion)")
            }
            try checks(ctx)
            let copy = try copyBandwidth(ctx)
            try decodeRows(ctx, copyGBps: copy)
            try prefillRow(ctx)
            try modelRows(ctx)
        } catch {
            FileHandle.standardError.write(Data("kvbench: cuda: \(error)\n".utf8))
            ctx.report.add(BenchRow(group: "cuda", name: "unavailable", threads: 0, value: 0, unit: "-", minSeconds: 0,
                                    medianSeconds: 0, readGBps: nil, ratio: nil, note: "\(error)"), json: ctx.options.json)
        }
    }

    /// CPU vs CUDA on random layers of every row format the kernels read: largest absolute
    /// difference of decode, prefill, column sums, observation and post-compaction outputs.
    static func checks(_ ctx: BenchContext) throws(KVError) {
        for headDim in [64, 128] {
            for type in [ElementType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1] {
                let start = DispatchTime.now().uptimeNanoseconds
                let cache = try randomLayer(type: type, headDim: headDim, kvHeads: 3, tokens: 1500, seed: 7)
                let queries = randomFloats(40 * 9 * headDim, seed: 11)
                let positions: [Int32] = (0..<40).map { (t: Int) -> Int32 in Int32(2920 + 2 * t) }
                let diff = try cache.cudaDifferences(layer: 0, heads: 9, queries: queries, queryPositions: positions)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                let met = diff.maximum <= 1e-3 && diff.compactedPositionsEqual
                ctx.addValue(group: "cuda", name: "CPU vs CUDA, \(type), d \(headDim)", threads: 0, value: Double(diff.maximum),
                             unit: "max abs", timing: Timing(min: seconds, median: seconds),
                             note: "\(diff); " + BenchContext.target("<= 1e-3, same kept positions", met: met))
            }
        }
    }

    /// A layer of `tokens` entries per KV head at positions 0, 2, 4, ... (head 2 with a few merged
    /// entries, so log counts are exercised).
    static func randomLayer(type: ElementType, headDim: Int, kvHeads: Int, tokens: Int, seed: UInt64,
                            layers: Int = 1) throws(KVError) -> KVCache {
        let cache = try KVCache(layers: layers, kvHeads: kvHeads, headDim: headDim, keyType: type, valueType: type)
        let keys = randomFloats(tokens * kvHeads * headDim, seed: seed)
        let values = randomFloats(tokens * kvHeads * headDim, seed: seed + 1)
        let positions = (0..<tokens).map { Int32(2 * $0) }
        for l in 0..<layers {
            try cache.append(layer: l, keys: keys, values: values, positions: positions)
        }
        if kvHeads > 2 && tokens > 40 { try cache.merge(layer: 0, head: 2, rows: 10..<20) }
        return cache
    }

    static func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return Float(Int64(state >> 40) - (1 << 23)) / Float(1 << 23)
        }
    }

    /// Device-to-device copy of 1 GiB (reads and writes: 2 bytes moved per byte copied).
    static func copyBandwidth(_ ctx: BenchContext) throws(KVError) -> Double {
        let bytes = ctx.options.quick ? 64 << 20 : 1 << 30
        let a = try CudaBuffer(byteCount: bytes), b = try CudaBuffer(byteCount: bytes)
        let timing = try time(ctx) { () throws(KVError) in try b.copy(from: a, count: bytes) }
        let gbps = 2 * Double(bytes) / timing.min / 1e9
        ctx.addValue(group: "cuda", name: "device copy \(bytes >> 20) MiB", threads: 0, value: gbps, unit: "GB/s",
                     timing: timing, note: "read + write")
        return gbps
    }

    /// Decode attention over `layers` layers of the default model's shape (9 query heads, 3 KV
    /// heads, d 64) at 32K and 128K tokens: bytes of keys and values read per second, over the copy.
    static func decodeRows(_ ctx: BenchContext, copyGBps: Double) throws(KVError) {
        let layers = 8
        for tokens in ctx.options.quick ? [4096] : [32768, 131072] {
            for type in [ElementType.f16, .q8_0] {
                let cache = try randomLayer(type: type, headDim: 64, kvHeads: 3, tokens: tokens, seed: 3, layers: 1)
                let parts = cache.headParts(layer: 0)
                var gpuLayers: [CudaKVLayer] = []
                for _ in 0..<layers { gpuLayers.append(try CudaKVLayer(parts: parts, headDim: 64, queryHeads: 9)) }
                let bytes = gpuLayers.reduce(0) { $0 + $1.byteCount }
                let timing = try time(ctx) { () throws(KVError) in
                    for layer in gpuLayers { try layer.enqueueDecode() }
                }
                let gbps = Double(bytes) / timing.min / 1e9
                let ratio = gbps / copyGBps
                ctx.report.add(BenchRow(group: "cuda", name: "decode attention \(type), \(tokens / 1024)K tokens x \(layers) layers",
                                        threads: 0, value: gbps, unit: "GB/s", minSeconds: timing.min,
                                        medianSeconds: timing.median, readGBps: copyGBps, ratio: ratio,
                                        note: type == .f16 && tokens == 32768
                                            ? BenchContext.target(">= 0.7 of the copy bandwidth", met: ratio >= 0.7) : nil),
                               json: ctx.options.json)
            }
        }
    }

    /// Causal prefill attention of 4096 tokens (d 64, 9 query heads over 3 KV heads), TFLOP/s
    /// counting 4 x d flops per visible (query, key, head).
    static func prefillRow(_ ctx: BenchContext) throws(KVError) {
        let tokens = ctx.options.quick ? 512 : 4096
        let cache = try randomLayer(type: .f16, headDim: 64, kvHeads: 3, tokens: tokens, seed: 5)
        let gpu = try CudaKVLayer(parts: cache.headParts(layer: 0), headDim: 64, queryHeads: 9)
        let queries = randomFloats(tokens * 9 * 64, seed: 9)
        let positions = (0..<tokens).map { Int32(2 * $0) }
        var output = [Float](repeating: 0, count: tokens * 9 * 64)
        let timing = try time(ctx) { () throws(KVError) in
            try gpu.prefill(queries: queries, queryCount: tokens, queryTokenStride: 9 * 64, queryPositions: positions,
                            output: &output)
        }
        let flops = 4.0 * 64 * 9 * Double(tokens) * Double(tokens + 1) / 2
        ctx.addValue(group: "cuda", name: "prefill attention f16, \(tokens) tokens", threads: 0,
                     value: flops / timing.min / 1e12, unit: "TFLOP/s", timing: timing,
                     note: "includes copying queries in and outputs back")
    }

    /// With the default model (`$KVCOMPRESS_MODEL`, or the cache directory's; the GPU machine has
    /// no network to fetch it, so these rows are skipped with a note without it): the kept sets of
    /// the eviction policies on the passkey prompt with attention on the CPU and on the GPU (target:
    /// identical), and decode at context 512 with attention on each (`--quick`: two policies on a
    /// short prompt, 4 steps at context 64).
    static func modelRows(_ ctx: BenchContext) throws(KVError) {
        let path = ProcessInfo.processInfo.environment["KVCOMPRESS_MODEL"] ?? "default"
        let present = FileManager.default.fileExists(atPath: path == "default"
            ? ModelStore.cacheDirectory.appendingPathComponent(ModelStore.defaultFileName).path : path)
        guard present else {
            ctx.addValue(group: "cuda", name: "model rows", threads: 0, value: 0, unit: "-",
                         timing: Timing(min: 0, median: 0), note: "skipped: the default model is not on this machine "
                         + "(set KVCOMPRESS_MODEL to its GGUF file)")
            return
        }
        let exact = try LlamaModel(path: path, mode: .exact)
        let prompt = try exact.tokenizer.encode(ctx.options.quick ? PasskeyPrompt(fillerBefore: 4, fillerAfter: 6).text
                                                : PasskeyPrompt(fillerBefore: 60, fillerAfter: 90).text)
        let names = ctx.options.quick ? ["SnapKVPress", "H2O"]
            : ["SnapKVPress", "TOVAPress", "ObservedAttentionPress", "KnormPress", "StreamingLLMPress",
               "ExpectedAttentionPress", "PyramidKVPress", "AdaKVPress:SnapKVPress", "H2O"]
        for name in names {
            let start = DispatchTime.now().uptimeNanoseconds
            let policy = try KVPolicyCatalog.entry(named: name).make(.compressionRatio(0.5), .prefill,
                                                                      patterns: KVHeadPatterns())
            let cpu = try KeptPositions.compute(model: exact, promptTokens: prompt, policy: policy, backend: .cpu)
            let gpu = try KeptPositions.compute(model: exact, promptTokens: prompt, policy: policy, backend: .cuda)
            let pairs = zip(cpu.joined(), gpu.joined())
            let equal = pairs.filter { $0.0 == $0.1 }.count, total = cpu.joined().count
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            ctx.addValue(group: "cuda", name: "kept sets CPU vs CUDA, \(name) 0.5, \(prompt.count)-token passkey",
                         threads: 0, value: Double(equal) / Double(total), unit: "identical",
                         timing: Timing(min: seconds, median: seconds),
                         note: "\(equal)/\(total) (layer, KV head) sets; "
                             + BenchContext.target("all identical", met: equal == total))
        }
        // Decode: the same 64 tokens after a 512-token prefill on each backend (the GPU copy of the
        // cache grows by appends), then their logits compared.
        let model = try LlamaModel(path: path, mode: .fast)
        let (context, steps) = ctx.options.quick ? (64, 4) : (512, 64)
        let ids = (0..<(context + steps)).map { Int32(1 + $0 * 7 % 2000) }
        var logits: [[Float]] = []
        for backend in [KVBackend.cpu, .cuda] {
            let session = try LlamaSession(model: model, chunkSize: 512, pool: ThreadPool.shared)
            try session.cache.setBackend(backend)
            _ = try session.prefill(Array(ids[0..<context]))
            var out: [Float] = []
            let start = DispatchTime.now().uptimeNanoseconds
            for i in 0..<steps { out += try session.decode(ids[context + i]) }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(steps)
            logits.append(out)
            let difference = backend == .cuda ? zip(logits[0], out).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) } : nil
            ctx.addValue(group: "cuda", name: "model decode at context \(context), attention on \(backend)",
                         threads: ThreadPool.shared.threadCount, value: 1 / seconds, unit: "tok/s",
                         timing: Timing(min: seconds, median: seconds),
                         note: difference.map { "max logit difference to the CPU over \(steps) steps: \($0) (fast mode "
                             + "quantizes activations to int8, which turns ulps into ~0.1; exact mode agrees to 1e-3)" })
        }
    }

    /// Minimum and median of repeated runs of `body` (synchronized with the device), after a warm-up.
    static func time(_ ctx: BenchContext, _ body: () throws(KVError) -> Void) throws(KVError) -> Timing {
        let device = try CudaDevice.shared()
        try body()
        try device.synchronize()
        var samples: [Double] = []
        for _ in 0..<ctx.repetitions {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            try device.synchronize()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return Timing(samples: samples)
    }
}
