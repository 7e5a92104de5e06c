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
    /// RoPE inverse frequencies (`headDim / 2` of them, f32 as the host uses them).
    public let ropeInverseFrequencies: [Float]
    /// The RoPE pairing the host applies to queries and keys.
    public let ropePairing: RoPEPairing

    /// Creates a shape after checking it.
    /// - Throws: `KVError.invalidParameter` when a count is not positive, `heads` is not a multiple of
    ///   `kvHeads`, `headDim` is odd, or there are not `headDim / 2` inverse frequencies (an empty
    ///   array is accepted for models without RoPE; then RoPE-aware features are unavailable).
    public init(layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                ropeInverseFrequencies: [Float] = [], ropePairing: RoPEPairing = .neox) throws(KVError) {
        guard layers >= 1 else { throw .invalidParameter(name: "layers", value: "\(layers)", expected: ">= 1") }
        guard kvHeads >= 1 else { throw .invalidParameter(name: "kvHeads", value: "\(kvHeads)", expected: ">= 1") }
        guard heads >= kvHeads, heads % kvHeads == 0 else {
            throw .invalidParameter(name: "heads", value: "\(heads)", expected: "a positive multiple of kvHeads (\(kvHeads))")
        }
        guard headDim >= 2, headDim % 2 == 0 else {
            throw .invalidParameter(name: "headDim", value: "\(headDim)", expected: "an even number >= 2")
        }
        guard ropeInverseFrequencies.isEmpty || ropeInverseFrequencies.count == headDim / 2 else {
            throw .invalidParameter(name: "ropeInverseFrequencies.count", value: "\(ropeInverseFrequencies.count)",
                                    expected: "headDim / 2 = \(headDim / 2) (or 0 for no RoPE)")
        }
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.ropeInverseFrequencies = ropeInverseFrequencies
        self.ropePairing = ropePairing
    }

    /// Query heads per KV head (`heads / kvHeads`).
    public var groupSize: Int { heads / kvHeads }

}
