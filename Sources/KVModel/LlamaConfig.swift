/// The shape and hyper-parameters of a Llama-family decoder, as read from GGUF metadata
/// (`llama.*` keys).
public struct LlamaConfig: Sendable, Equatable {
    /// Number of decoder layers (`llama.block_count`).
    public var layers: Int
    /// Model width (`llama.embedding_length`).
    public var hidden: Int
    /// FFN inner width (`llama.feed_forward_length`).
    public var ffn: Int
    /// Query heads (`llama.attention.head_count`).
    public var heads: Int
    /// Key/value heads (`llama.attention.head_count_kv`); `heads` is a multiple of it (GQA).
    public var kvHeads: Int
    /// Vocabulary size (rows of the embedding matrix).
    public var vocab: Int
    /// RoPE base (`llama.rope.freq_base`).
    public var ropeTheta: Float
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    public var rmsEps: Float
    /// Training context length (`llama.context_length`).
    public var contextLength: Int

    /// Per-head dimension, `hidden / heads`.
    public var headDim: Int { hidden / heads }
    /// Query heads per KV head.
    public var groupSize: Int { heads / kvHeads }

    /// Creates a configuration, validating that the shapes fit together.
    public init(layers: Int, hidden: Int, ffn: Int, heads: Int, kvHeads: Int, vocab: Int,
                ropeTheta: Float, rmsEps: Float, contextLength: Int) throws(KVError) {
        guard layers > 0, hidden > 0, ffn > 0, heads > 0, kvHeads > 0, vocab > 0 else {
            throw .unsupportedModel("non-positive dimension in config (layers \(layers), hidden \(hidden), "
                + "ffn \(ffn), heads \(heads), kvHeads \(kvHeads), vocab \(vocab))")
        }
        guard contextLength > 0 else {
            throw .unsupportedModel("llama.context_length = \(contextLength): expected a positive context length")
        }
        guard hidden % heads == 0, heads % kvHeads == 0, (hidden / heads) % 2 == 0 else {
            throw .unsupportedModel("hidden \(hidden), heads \(heads), kvHeads \(kvHeads): hidden must be a multiple "
                + "of heads with an even head dimension, and heads a multiple of kvHeads")
        }
        self.layers = layers
        self.hidden = hidden
        self.ffn = ffn
        self.heads = heads
        self.kvHeads = kvHeads
        self.vocab = vocab
        self.ropeTheta = ropeTheta
        self.rmsEps = rmsEps
        self.contextLength = contextLength
    }

    /// The RoPE the model applies (standard frequencies `ropeTheta^(-2i/d)`, f32 as Hugging Face
    /// computes them) with the given pairing.
    /// - Throws: `KVError.unsupportedModel` when `ropeTheta` is not a finite value above 1.
    public func rope(pairing: RoPEPairing) throws(KVError) -> RoPE {
        do {
            return try RoPE(headDim: headDim, base: ropeTheta, pairing: pairing)
        } catch {
            throw .unsupportedModel("llama.rope.freq_base = \(ropeTheta) is not a usable RoPE base (\(error))")
        }
    }
}

import Foundation
