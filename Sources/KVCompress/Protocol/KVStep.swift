/// One forward pass of a sequence as a ``KVCompressor`` sees it: a prompt chunk or a decode step,
/// with the positions its tokens take.
///
/// A host gets a step from ``KVCompressor/beginPrefill(tokenCount:endsPrompt:)`` or
/// ``KVCompressor/beginDecode()``, rotates the step's queries and keys at ``positions``, then runs
/// ``KVCompressor/attend(layer:step:queries:preRoPEQueries:keys:values:output:attentionInputs:)`` for every layer in
/// order. A step is valid until the next one begins.
public struct KVStep: Sendable, Equatable {
    /// Prefill chunk or decode step.
    public let phase: KVPhase
    /// The positions the step's tokens take, as the cache assigned them (strictly increasing).
    public let positions: [Int32]
    /// Whether the step starts the sequence (nothing was processed before it).
    public let isFirstChunk: Bool
    /// Whether the step ends a prompt (prompt-compressing policies act after it; always false
    /// for a decode step).
    public let isLastChunk: Bool
    /// Tokens of the sequence processed before this step.
    public let processedBefore: Int
    /// Sequence number of the step within its compressor (identifies stale steps).
    let serial: Int

    /// Number of tokens in the step.
    public var tokenCount: Int { positions.count }

    /// One past the step's last position: the sequence length at original positions, and what
    /// ``KVLayerContext/totalLength`` reports to policies.
    public var endPosition: Int { Int(positions[positions.count - 1]) + 1 }
}
