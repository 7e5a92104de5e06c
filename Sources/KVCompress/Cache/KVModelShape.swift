/// The attention shape of a model, as cache policies see it.
///
/// Query head `h` reads KV head `h / groupSize` (the Hugging Face `repeat_kv` layout).
public struct KVModelShape: Sendable, Equatable {
    /// Number of transformer layers.
    public let layers: Int
    /// Query heads per layer.
    public let heads: Int
    /// Key/value heads per layer (`heads` is a multiple of it).
    public let kvHeads: Int
    /// Dimension of one head vector.
    public let headDim: Int
    /// The rotary position embedding the host applies to queries and keys (nil for a model
    /// without RoPE; then RoPE-aware features such as ExpectedAttention and key re-positioning
    /// throw `KVError.invalidParameter`).
    public let rope: RoPE?
    /// The model's context length (the largest position span it was trained on), or nil when
    /// unbounded or unknown. ``KVCompressor`` refuses a step whose positions would reach it, and
    /// policies that re-position keys move them back to position 0 before that.
    public let contextLength: Int?

    /// Creates a shape after checking it.
    /// - Throws: `KVError.invalidParameter` when a count is not positive, `heads` is not a multiple
    ///   of `kvHeads`, `headDim` is odd, the RoPE is for another head dimension, or the context
    ///   length is not positive.
    public init(layers: Int, heads: Int, kvHeads: Int, headDim: Int, rope: RoPE? = nil,
                contextLength: Int? = nil) throws(KVError) {
        guard layers >= 1 else { throw .invalidParameter(name: "layers", value: "\(layers)", expected: ">= 1") }
        guard kvHeads >= 1 else { throw .invalidParameter(name: "kvHeads", value: "\(kvHeads)", expected: ">= 1") }
        guard heads >= kvHeads, heads % kvHeads == 0 else {
            throw .invalidParameter(name: "heads", value: "\(heads)", expected: "a positive multiple of kvHeads (\(kvHeads))")
        }
        guard headDim >= 2, headDim % 2 == 0 else {
            throw .invalidParameter(name: "headDim", value: "\(headDim)", expected: "an even number >= 2")
        }
        if let rope, rope.headDim != headDim {
            throw .invalidParameter(name: "rope.inverseFrequencies.count", value: "\(rope.inverseFrequencies.count)",
                                    expected: "headDim / 2 = \(headDim / 2)")
        }
        if let contextLength, contextLength < 1 {
            throw .invalidParameter(name: "contextLength", value: "\(contextLength)", expected: ">= 1 (or nil)")
        }
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.rope = rope
        self.contextLength = contextLength
    }

    /// Query heads per KV head (`heads / kvHeads`).
    public var groupSize: Int { heads / kvHeads }

    /// The RoPE, or a `KVError.invalidParameter` naming the feature that needs it.
    func requireRoPE(for feature: String) throws(KVError) -> RoPE {
        guard let rope else {
            throw .invalidParameter(name: "KVModelShape.rope", value: "nil",
                                    expected: "the model's RoPE (\(feature) needs it)")
        }
        return rope
    }
}
