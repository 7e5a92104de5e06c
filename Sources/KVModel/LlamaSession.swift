import CKVKernels
import Foundation
import KVCompress
import KVCore

/// One sequence being processed by a ``LlamaModel``: its KV cache, the cache policy that compresses
/// it and scratch buffers. Not thread-safe: use one session per sequence (the forward pass itself
/// runs on the session's thread pool).
///
/// The session drives the cache through a `KVCompressor`, so positions have one owner: every new
/// token takes the cache's `nextPosition` (the original sequence position, or the in-cache position
/// after a policy re-positioned keys, as StreamingLLM with `repositionKeys` does). With such a
/// policy the session runs on streams longer than the model's context length in bounded memory;
/// without one, generation stops at the context length (``GenerationResult/StopReason/contextFull``).
public final class LlamaSession {
    /// The model this session runs.
    public let model: LlamaModel
    /// Runs the session's cache policy and owns the cache.
    public let compressor: KVCompressor
    /// Maximum prefill chunk (tokens per forward pass).
    public let chunkSize: Int
    /// The thread pool forward passes use.
    public let pool: ThreadPool

    let scratch: Scratch
    /// Set to an empty profile to time every decode step phase by phase from now on (nil, the
    /// default: no timing); read it back after the steps. Prefill chunks are not recorded.
    public var stepProfile: DecodeStepProfile?
    /// What the forward pass records while a replay with gradients runs (nil otherwise).
    var replayTape: ReplayTape?

    /// The sequence's cache (ragged per layer and KV head).
    public var cache: KVCache { compressor.cache }

    /// The position the next token takes: the cache's `nextPosition`.
    public var position: Int { cache.nextPosition }

    /// Tokens processed so far in this sequence (prompt and generated tokens fed back).
    public var processedTokens: Int { compressor.processedTokens }

    /// Creates a session with an empty cache.
    /// - Parameters:
    ///   - policy: the cache policy (default `FullCache`: nothing evicted).
    ///   - keys: how the cache stores keys (default: f32 rows in exact mode, f16 rows in fast mode;
    ///     any of `KVEntryFormat.supported`, e.g. `.rows(.q8_0)` or `.kivi(bits: 2)`).
    ///   - values: how it stores values (same default and choices).
    ///   - chunkSize: prefill chunk size in tokens (>= 1).
    ///   - pool: threads for the forward pass (default: every core).
    /// - Throws: `KVError.invalidParameter` for a chunk size below 1 or a cache format the attention
    ///   cannot read.
    public init(model: LlamaModel, policy: any KVCachePolicy = FullCache(), keys: KVEntryFormat? = nil,
                values: KVEntryFormat? = nil,
                chunkSize: Int = 512, pool: ThreadPool = .shared) throws(KVError) {
        guard chunkSize >= 1 else {
            throw .invalidParameter(name: "chunkSize", value: "\(chunkSize)", expected: ">= 1")
        }
        let c = model.config
        self.model = model
        self.chunkSize = chunkSize
        self.pool = pool
        let defaultFormat = KVEntryFormat.rows(model.mode == .exact ? .f32 : .f16)
        let shape = model.shape
        let cache = try KVCache(layers: shape.layers, kvHeads: shape.kvHeads, headDim: shape.headDim,
                                keys: keys ?? defaultFormat, values: values ?? defaultFormat)
        self.scratch = Scratch(config: c, chunk: chunkSize)
        self.compressor = try KVCompressor(policy: policy, cache: cache, shape: model.shape, pool: pool)
        compressor.outputProjection = { [model] layer in model.outputProjection(layer: layer) }
    }

    /// Starts a new sequence: empties the cache and resets the policy's state.
    public func reset() { compressor.reset() }
}

/// Per-session scratch buffers, sized for one prefill chunk.
final class Scratch {
    let x, xn, q, qPre, k, v, attn, gate, up, logits: UnsafeMutablePointer<Float>
    let xq: UnsafeMutablePointer<kvk_block_q8_act>
    let positions: UnsafeMutablePointer<Int32>
    private let all: [UnsafeMutableRawPointer]

    init(config c: LlamaConfig, chunk: Int) {
        let kvDim = c.kvHeads * c.headDim
        func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
            UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        }
        x = floats(chunk * c.hidden)
        xn = floats(chunk * c.hidden)
        q = floats(chunk * c.hidden)
        qPre = floats(chunk * c.hidden)
        k = floats(chunk * kvDim)
        v = floats(chunk * kvDim)
        attn = floats(chunk * c.hidden)
        gate = floats(chunk * c.ffn)
        up = floats(chunk * c.ffn)
        logits = floats(Scratch.logitRows * c.vocab)
        xq = .allocate(capacity: chunk * max(c.hidden, c.ffn) / 32)
        positions = .allocate(capacity: chunk)
        all = [x, xn, q, qPre, k, v, attn, gate, up, logits].map { UnsafeMutableRawPointer($0) }
            + [UnsafeMutableRawPointer(xq), UnsafeMutableRawPointer(positions)]
    }

    /// Token rows whose logits are computed at once when every row's logits are needed (scoring).
    static let logitRows = 16

    deinit { all.forEach { $0.deallocate() } }
}
