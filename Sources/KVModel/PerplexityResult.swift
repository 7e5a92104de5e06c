import Foundation

/// What a teacher-forced scoring run (``LlamaSession/perplexity(tokens:maxTokens:progress:)``) measured.
public struct PerplexityResult: Sendable {
    /// Tokens fed to the model.
    public var tokens: Int
    /// Tokens whose probability was scored: every token fed after the first, and the token after
    /// the last one fed when scoring stopped at the context length.
    public var scoredTokens: Int
    /// Sum over the scored tokens of `-ln p(token | every token before it)`, in nats.
    public var negativeLogLikelihood: Double
    /// Whether scoring stopped early because the next chunk's positions would have reached the
    /// model's context length (the policy does not bound the cache and re-position keys).
    public var stoppedAtContextLength: Bool
    /// The largest cache size during the run, in bytes.
    public var peakCacheBytes: Int
    /// The cache size at the end, in bytes.
    public var finalCacheBytes: Int
    /// Seconds spent (forward passes, policy work and scoring).
    public var seconds: Double

    /// Mean negative log-likelihood per scored token, in nats.
    public var meanNegativeLogLikelihood: Double { negativeLogLikelihood / Double(max(scoredTokens, 1)) }
    /// `exp(mean negative log-likelihood)`.
    public var perplexity: Double { exp(meanNegativeLogLikelihood) }
    /// Tokens fed per second.
    public var tokensPerSecond: Double { Double(tokens) / max(seconds, 1e-9) }
}
