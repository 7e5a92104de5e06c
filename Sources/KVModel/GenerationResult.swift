/// What a generation produced, with timing and memory figures.
public struct GenerationResult: Sendable {
    /// Why generation stopped.
    public enum StopReason: String, Sendable {
        /// A stop token (EOS or a caller-given id) was produced; it is not part of `tokens`.
        case stopToken
        /// `maxTokens` tokens were produced.
        case maxTokens
        /// The next token's position would reach the model's context length (the cache's policy
        /// does not re-position keys); everything generated so far is kept. A policy that bounds
        /// the cache and re-positions keys (StreamingLLM with `repositionKeys`) goes on instead.
        case contextFull
    }

    /// Generated token ids (prompt excluded, stop token excluded).
    public var tokens: [Int32]
    /// Their decoded text.
    public var text: String
    /// Why generation stopped.
    public var stopReason: StopReason
    /// Prompt tokens processed.
    public var promptTokens: Int
    /// Seconds spent in prefill (including policy work at prefill).
    public var prefillSeconds: Double
    /// Single-token forward passes run after the prompt.
    public var decodeSteps: Int
    /// Seconds spent in those forward passes.
    public var decodeSeconds: Double
    /// Cache bytes at the end.
    public var cacheBytes: Int
    /// The largest cache size during the call (prompt and generation), in bytes.
    public var peakCacheBytes: Int

    /// Prompt tokens per second.
    public var prefillTokensPerSecond: Double { Double(promptTokens) / max(prefillSeconds, 1e-9) }
    /// Decoded tokens per second (forward passes after the prompt).
    public var decodeTokensPerSecond: Double { Double(decodeSteps) / max(decodeSeconds, 1e-9) }
}
