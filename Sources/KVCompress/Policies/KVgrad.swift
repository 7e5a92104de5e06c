/// KVgrad: KVzip's context reconstruction scored by input x gradient attribution. Each replay of a
/// chunk of the prompt (as ``KVzip``'s, 512 tokens by default) runs forward **and backward**: the
/// host backpropagates `Φ = Σ_t ||h_t||²`, the replay tokens' last-layer hidden states (before the
/// final norm), to every layer's attention outputs. Entry `j` of the chunk then scores
///
///     max over query heads h of its group and replay tokens t of  A^h[t, j] · ||W_o^h v_j||₂ · ||∂Φ/∂a_t||₂
///
/// with `A` KVzip's renormalized replay attention (sinks, chunk and replay only), `W_o^h` head
/// `h`'s slice of the output projection and `a_t` the layer's attention output of replay token `t`:
/// how much the entry writes into the residual stream, times how much the objective depends on
/// that stream. Sinks, prefix and the global bottom-k over all layers and heads are KVzip's, and the
/// entries are really evicted (kvpress only masks them).
///
/// The host must provide gradients (``KVReplay/gradients``; ``LlamaSession`` does, in f32 through
/// every layer, about three prefills' time per replay on a CPU) and the output projection.
///
/// Paper: "KVgrad" (OpenReview cg1wTCJjjk); reference code NVIDIA/kvpress `kvgrad_press.py`
/// (`KVgradPress`, a `KVzipPress` subclass).
public struct KVgrad: KVCachePolicy {
    /// The replays, ranking and eviction (``KVzip`` with gradient weighting).
    public let base: KVzip

    /// Creates the policy (kvpress's defaults: 4 sinks, chunks of 512 tokens, one global ranking).
    /// - Throws: `KVError.invalidParameter` for an invalid budget, negative sinks or prefix, or a
    ///   chunk size below 1.
    public init(budget: KVBudget, sinks: Int = 4, chunkSize: Int = 512, prefixLength: Int = 0,
                layerwise: Bool = false) throws(KVError) {
        base = try KVzip(budget: budget, sinks: sinks, chunkSize: chunkSize, prefixLength: prefixLength,
                         layerwise: layerwise, weighting: .gradient)
    }

    /// Fresh state: nothing scored.
    public func makeState(shape: KVModelShape) -> KVzip.State { base.makeState(shape: shape) }

    /// Nothing during a prompt: the replays after it score.
    public func afterPrefill(_ context: KVLayerContext, state: inout KVzip.State) throws(KVError) {}

    /// ``KVzip``'s replays, asking the host for gradients.
    public func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout KVzip.State) -> [KVReplay] {
        base.replays(afterPrompt: prompt, cache: cache, state: &state)
    }

    /// Scores the replay's chunk from its attention, value output norms and gradient norms.
    /// - Throws: `KVError.invalidState` without gradient norms; `.invalidParameter` without the
    ///   output projection.
    public func afterReplay(_ context: KVLayerContext, replay: Int, state: inout KVzip.State) throws(KVError) {
        try base.afterReplay(context, replay: replay, state: &state)
    }

    /// Evicts the lowest entries over every layer and head once the replays ran.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout KVzip.State, pool: ThreadPool?) throws(KVError) {
        try base.afterPrompt(cache: cache, shape: shape, state: &state, pool: pool)
    }

    /// `"KVgrad"`.
    public var name: String { "KVgrad" }
}
