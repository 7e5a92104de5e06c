import CKVKernels
import Foundation
import KVCompress
import KVCore

/// One sequence being processed by a ``LlamaModel``: its KV cache, the next position, the active
/// cache policy and scratch buffers. Not thread-safe: use one session per sequence (the forward
/// pass itself runs on the model's thread pool).
///
/// Positions are *original* positions: after a policy evicts entries, new tokens continue at
/// `position`, not at the cache length (kvpress, SnapKV, H2O, TOVA semantics).
public final class LlamaSession {
    /// The model this session runs.
    public let model: LlamaModel
    /// The sequence's cache (ragged per layer and KV head).
    public let cache: KVCache
    /// Tokens processed so far (the position the next token gets).
    public internal(set) var position: Int = 0
    /// Maximum prefill chunk (tokens per forward pass).
    public let chunkSize: Int
    /// The thread pool forward passes use.
    public let pool: ThreadPool
    /// Runs the session's cache policy after each layer's attention.
    public let compressor: KVCompressor

    let scratch: Scratch

    /// Creates a session with an empty cache.
    /// - Parameters:
    ///   - policy: the cache policy (default ``FullCache``: nothing evicted).
    ///   - cacheType: element type of cached keys and values (default: f32 in exact mode, f16 in fast mode).
    ///   - chunkSize: prefill chunk size in tokens (>= 1).
    public init(model: LlamaModel, policy: any KVCachePolicy = FullCache(), cacheType: ElementType? = nil,
                chunkSize: Int = 512, pool: ThreadPool = .shared) throws(KVError) {
        guard chunkSize >= 1 else {
            throw .invalidParameter(name: "chunkSize", value: "\(chunkSize)", expected: ">= 1")
        }
        let c = model.config
        self.model = model
        self.chunkSize = chunkSize
        self.pool = pool
        self.cache = try KVCache(layers: c.layers, kvHeads: c.kvHeads, headDim: c.headDim,
                                 elementType: cacheType ?? (model.mode == .exact ? .f32 : .f16))
        self.scratch = Scratch(config: c, chunk: chunkSize)
        self.compressor = try KVCompressor(policy: policy, cache: cache, shape: model.shape)
    }
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
        logits = floats(c.vocab)
        xq = .allocate(capacity: chunk * max(c.hidden, c.ffn) / 32)
        positions = .allocate(capacity: chunk)
        all = [x, xn, q, qPre, k, v, attn, gate, up, logits].map { UnsafeMutableRawPointer($0) }
            + [UnsafeMutableRawPointer(xq), UnsafeMutableRawPointer(positions)]
    }

    deinit { all.forEach { $0.deallocate() } }
}
