/// A token sequence a policy asks the host to run through the model right after a prompt, on top of
/// the prompt's cache, to score the prompt's entries: KVzip's context reconstruction ("Repeat the
/// previous context exactly." followed by the context itself), KVCompose's replay of the context.
///
/// The policy describes the tokens (it has no tokenizer); the host turns the description into ids,
/// runs them in steps from ``KVCompressor/beginReplay(tokenCount:endsReplay:)`` at the positions
/// after the prompt, and ``KVCompressor`` calls the policy's
/// ``KVCachePolicy/afterReplay(_:replay:state:)`` after each layer's attention. When a replay ends,
/// its entries leave the cache and the next position is the prompt's end again, so the sequence
/// continues as if the replay had never run.
///
/// A replay with ``gradients`` (KVgrad's) also asks the host for each layer's sensitivity of the
/// objective `Φ = Σ_t ||h_t||²` (the replay tokens' last-layer hidden states, before the final norm)
/// to each token's attention output: the host runs the replay forward, backpropagates `Φ` to every
/// layer's attention outputs, then calls
/// ``KVCompressor/attributeReplay(layer:queries:gradientNorms:)`` once per layer, which is when the
/// policy's ``KVCachePolicy/afterReplay(_:replay:state:)`` runs (with
/// ``KVLayerContext/replayGradientNorms``) instead of during the forward pass.
public struct KVReplay: Sendable, Equatable {
    /// One run of tokens of a replay.
    public enum Segment: Sendable, Equatable {
        /// Text the host tokenizes as plain text (no beginning-of-sequence token).
        case text(String)
        /// The host's chat-template tokens that end a user turn and open the assistant's (ChatML's
        /// `<|im_end|>\n<|im_start|>assistant\n`; a newline for a model without a chat template).
        case assistantTurn
        /// The prompt's own tokens at these offsets from the prompt's first token.
        case prompt(Range<Int>)
    }

    /// The replay's tokens, in order.
    public let segments: [Segment]
    /// Whether the policy scores with the gradient norms of the replay's objective (see above).
    public let gradients: Bool
    /// For RestoreKV's restore pass: the learned embeddings the host runs instead of tokens, with
    /// the artifact's LoRA adapter active, and whose entries **stay** in the cache when the replay
    /// ends (the next position follows them); nil for a replay of tokens.
    public let restore: RestoreKVArtifact?

    /// Creates a replay.
    /// - Parameter gradients: whether the host attributes the replay's objective to each layer's
    ///   attention outputs (default false).
    public init(_ segments: [Segment], gradients: Bool = false) {
        self.segments = segments
        self.gradients = gradients
        restore = nil
    }

    /// A restore pass: `artifact`'s embeddings run through the model with its adapter, entries kept.
    public init(restoring artifact: RestoreKVArtifact) {
        segments = []
        gradients = false
        restore = artifact
    }
}
