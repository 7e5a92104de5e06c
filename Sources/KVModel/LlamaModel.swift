import CKVKernels
import Foundation
import KVCompress
import KVCore

/// A Llama-family decoder (Llama 2/3, SmolLM, TinyLlama...) loaded from GGUF: the reference host
/// that drives KVCompress caches and policies on a real model.
///
/// The model is immutable and `Sendable`; per-sequence state (cache, positions, scratch) lives in
/// a ``LlamaSession``. In ``ComputeMode/fast`` the weights stay memory-mapped and are used in place;
/// in ``ComputeMode/exact`` they are dequantized to f32 once.
///
/// Pairing: GGUF's converter permutes the rows of `attn_q` / `attn_k` so that llama.cpp's
/// interleaved RoPE (`KVK_ROPE_NORM`) equals Hugging Face's rotate-half RoPE on the original
/// weights; attention scores are therefore identical to the Hugging Face model, while cached key
/// vectors are stored in the permuted channel order.
public final class LlamaModel: @unchecked Sendable {
    /// Shape and hyper-parameters.
    public let config: LlamaConfig
    /// How forward passes compute.
    public let mode: ComputeMode
    /// The tokenizer built from the same file.
    public let tokenizer: Tokenizer
    /// The rotary position embedding applied to queries and keys (interleaved pairing for GGUF
    /// llama weights).
    public let rope: RoPE
    /// The attention shape cache policies see.
    public let shape: KVModelShape

    let layers: [LlamaLayerWeights]
    let embedding: WeightMatrix
    let output: WeightMatrix
    let outputNorm: UnsafePointer<Float>
    /// Keeps the mapping (fast mode) or owned f32 buffers (exact mode) alive.
    private let storage: AnyObject
    private var ownedBuffers: [UnsafeMutableRawPointer] = []

    /// Bytes of weights this model reads per token (all matrices once), as loaded.
    public var weightBytes: Int {
        layers.reduce(output.byteCount) { sum, l in
            sum + l.wq.byteCount + l.wk.byteCount + l.wv.byteCount + l.wo.byteCount
                + l.gate.byteCount + l.up.byteCount + l.down.byteCount
        }
    }

    /// Loads a model from a GGUF file (a path, or `"default"` for the default model, which is
    /// downloaded on first use).
    public convenience init(path: String, mode: ComputeMode = .fast) throws(KVError) {
        let url = try ModelStore.resolve(path)
        let file = try GGUFFile(path: url.path)
        try self.init(gguf: file, mode: mode)
    }

    /// Builds the model from an opened GGUF file.
    public convenience init(gguf: GGUFFile, mode: ComputeMode = .fast) throws(KVError) {
        try self.init(gguf: gguf, mode: mode, layerLimit: nil, contextLength: nil)
    }

    /// Builds the model from an opened GGUF file, keeping only its first `layerLimit` layers and
    /// using `contextLength` instead of the file's when given (tests use a one-layer model, whose
    /// keys and values depend only on each token and its position, and short context lengths).
    init(gguf: GGUFFile, mode: ComputeMode, layerLimit: Int?, contextLength: Int?) throws(KVError) {
        let arch = try gguf.string("general.architecture")
        guard arch == "llama" else {
            throw .unsupportedModel("architecture '\(arch)' is not supported; this host runs 'llama' GGUF models")
        }
        let embd = try gguf.info("token_embd.weight")
        let embdData = try gguf.data("token_embd.weight")
        let hidden = try gguf.int("llama.embedding_length")
        let heads = try gguf.int("llama.attention.head_count")
        let blocks = try gguf.int("llama.block_count")
        let config = try LlamaConfig(
            layers: layerLimit.map { min($0, blocks) } ?? blocks,
            hidden: hidden,
            ffn: try gguf.int("llama.feed_forward_length"),
            heads: heads,
            kvHeads: (try? gguf.int("llama.attention.head_count_kv")) ?? heads,
            vocab: embd.dimensions.count == 2 ? embd.dimensions[1] : 0,
            ropeTheta: (try? gguf.float("llama.rope.freq_base")) ?? 10000,
            rmsEps: (try? gguf.float("llama.attention.layer_norm_rms_epsilon")) ?? 1e-5,
            contextLength: contextLength ?? (try? gguf.int("llama.context_length")) ?? 4096)
        // Embedding rows are read in place, `hidden` values each: a narrower tensor would be read past
        // its end (the output projection's own check covers it only when there is no output.weight).
        guard embd.dimensions == [hidden, config.vocab] else {
            throw .shapeMismatch("tensor 'token_embd.weight' has dims \(embd.dimensions), expected "
                + "[\(hidden), \(config.vocab)] (llama.embedding_length, vocabulary)")
        }
        self.config = config
        self.mode = mode
        self.tokenizer = try Tokenizer(gguf: gguf)
        self.rope = try config.rope(pairing: .interleaved)
        self.shape = try KVModelShape(layers: config.layers, heads: config.heads, kvHeads: config.kvHeads,
                                      headDim: config.headDim, rope: rope, contextLength: config.contextLength)
        self.storage = gguf

        var owned: [UnsafeMutableRawPointer] = []
        func matrix(_ name: String, rows: Int, cols: Int) throws(KVError) -> WeightMatrix {
            let t = try gguf.info(name)
            guard t.dimensions == [cols, rows] else {
                throw .shapeMismatch("tensor '\(name)' has dims \(t.dimensions), expected [\(cols), \(rows)]")
            }
            guard cols % t.type.blockSize == 0 else {
                throw .shapeMismatch("tensor '\(name)': \(cols) columns is not a multiple of the \(t.type) block")
            }
            let raw = try gguf.data(name)
            if mode == .fast && t.type != .bf16 {
                var m = WeightMatrix(name: name, type: t.type, data: raw.baseAddress!, rows: rows, cols: cols)
                if kvk_rows4_preferred(t.type.kernelType) != 0 {
                    // Memory-neutral: the packed copy replaces the mapped pages in the resident set.
                    let buffer = UnsafeMutableRawPointer.allocate(byteCount: m.byteCount, alignment: 64)
                    owned.append(buffer)
                    kvk_pack_rows4(t.type.kernelType, raw.baseAddress!, rows, cols, buffer)
                    m.packed = UnsafeRawPointer(buffer)
                    try gguf.releaseResidentPages(of: name)
                }
                return m
            }
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: rows * cols * 4, alignment: 64)
            owned.append(buffer)
            kvk_dequantize(t.type.kernelType, raw.baseAddress!, buffer.assumingMemoryBound(to: Float.self), rows * cols)
            return WeightMatrix(name: name, type: .f32, data: UnsafeRawPointer(buffer), rows: rows, cols: cols)
        }
        func vector(_ name: String, count: Int) throws(KVError) -> UnsafePointer<Float> {
            let t = try gguf.info(name)
            guard t.dimensions == [count] else {
                throw .shapeMismatch("tensor '\(name)' has dims \(t.dimensions), expected [\(count)]")
            }
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
            owned.append(UnsafeMutableRawPointer(buffer))
            kvk_dequantize(t.type.kernelType, try gguf.data(name).baseAddress!, buffer, count)
            return UnsafePointer(buffer)
        }

        let c = config
        let kvDim = c.kvHeads * c.headDim
        var layers: [LlamaLayerWeights] = []
        do {
            for l in 0..<c.layers {
                let p = "blk.\(l)."
                layers.append(LlamaLayerWeights(
                    attnNorm: try vector(p + "attn_norm.weight", count: c.hidden),
                    ffnNorm: try vector(p + "ffn_norm.weight", count: c.hidden),
                    wq: try matrix(p + "attn_q.weight", rows: c.hidden, cols: c.hidden),
                    wk: try matrix(p + "attn_k.weight", rows: kvDim, cols: c.hidden),
                    wv: try matrix(p + "attn_v.weight", rows: kvDim, cols: c.hidden),
                    wo: try matrix(p + "attn_output.weight", rows: c.hidden, cols: c.hidden),
                    gate: try matrix(p + "ffn_gate.weight", rows: c.ffn, cols: c.hidden),
                    up: try matrix(p + "ffn_up.weight", rows: c.ffn, cols: c.hidden),
                    down: try matrix(p + "ffn_down.weight", rows: c.hidden, cols: c.ffn)))
            }
            // Embedding rows are gathered and dequantized one token at a time; keep them in place.
            self.embedding = WeightMatrix(name: "token_embd.weight", type: embd.type, data: embdData.baseAddress!,
                                          rows: c.vocab, cols: c.hidden)
            let outputName = gguf.hasTensor("output.weight") ? "output.weight" : "token_embd.weight"
            self.output = try matrix(outputName, rows: c.vocab, cols: c.hidden)
            self.outputNorm = try vector("output_norm.weight", count: c.hidden)
        } catch {
            owned.forEach { $0.deallocate() }
            throw error
        }
        self.layers = layers
        self.ownedBuffers = owned
    }

    deinit {
        ownedBuffers.forEach { $0.deallocate() }
    }

    /// The attention output projection `W_o` of `layer`, dequantized to f32 (what output-aware
    /// policies such as `CriticalKV` read; `LlamaSession` hands it to its compressor).
    public func outputProjection(layer: Int) -> KVOutputProjection {
        precondition(layer >= 0 && layer < layers.count, "layer \(layer) out of 0..<\(layers.count)")
        let wo = layers[layer].wo
        var weights = [Float](repeating: 0, count: wo.rows * wo.cols)
        weights.withUnsafeMutableBufferPointer { kvk_dequantize(wo.type.kernelType, wo.data, $0.baseAddress!, wo.rows * wo.cols) }
        // W_o maps the heads' outputs (hidden = heads x headDim columns) to hidden rows: always fits the shape.
        return try! KVOutputProjection(hiddenSize: wo.rows, weights: weights, shape: shape)
    }

    /// Writes the f32 embedding of `token` into `out` (`hidden` floats).
    func embed(_ token: Int32, into out: UnsafeMutablePointer<Float>) {
        let row = embedding.data + Int(token) * embedding.rowBytes
        kvk_dequantize(embedding.type.kernelType, row, out, config.hidden)
    }
}
