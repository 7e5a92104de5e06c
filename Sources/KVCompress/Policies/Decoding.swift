/// Decoding: compression while generating. Every `interval` generated tokens, each layer is cut back
/// to a target by any scorer (per-head top-k); the prompt is left as it is (pair it with a prefill
/// policy through ``Composed``: kvpress's `PrefillDecodingPress`). Entries are really evicted.
///
/// The target comes from the budget: `.tokens(n)` keeps `n` entries per head (kvpress
/// `DecodingPress(target_size=n)`); `.compressionRatio(r)` keeps `max(1, Int(T * (1 - r)))` of the
/// `T` tokens seen so far (kvpress `CompressionRatioDecodingPress`); `.bytes` converts to entries as
/// everywhere. The scorer observes every prompt chunk and generated token as usual (kvpress feeds its
/// scorer the last 256 generated tokens' hidden states instead; for window scorers such as SnapKV,
/// whose window is shorter, the queries are the same).
///
/// Reference: NVIDIA/kvpress `decoding_press.py`, `compression_ratio_decoding_press.py`,
/// `prefill_decoding_press.py` (defaults: every 512 steps, 2048 entries).
public struct Decoding<Scorer: KVScorer>: KVCachePolicy {
    /// Scores entries when a compression is due.
    public let scorer: Scorer
    /// The target after each compression.
    public let budget: KVBudget
    /// Generated tokens between compressions (kvpress default 512).
    public let interval: Int

    /// Per-sequence state.
    public struct State {
        /// The scorer's state.
        public var scorer: Scorer.State
        /// Generated tokens per layer since its last compression.
        public var steps: [Int]
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or `interval < 1`.
    public init(scorer: Scorer, budget: KVBudget = .tokens(2048), interval: Int = 512) throws(KVError) {
        guard interval >= 1 else { throw .invalidParameter(name: "interval", value: "\(interval)", expected: ">= 1 generated tokens") }
        self.scorer = scorer
        self.budget = try budget.validated()
        self.interval = interval
    }

    /// Fresh scorer state, no steps counted.
    public func makeState(shape: KVModelShape) -> State {
        State(scorer: scorer.makeState(shape: shape), steps: Array(repeating: 0, count: shape.layers))
    }

    /// The scorer observes the prompt; nothing is evicted.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        if context.isFirstChunk { state.steps[context.layer] = 0 }
        try scorer.observe(context, state: &state.scorer)
    }

    /// Counts the step; every `interval` steps cuts each head back to the target.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        try scorer.observe(context, state: &state.scorer)
        state.steps[l] += 1
        guard state.steps[l] >= interval else { return }
        state.steps[l] = 0
        let target = budget.keptCount(length: context.totalLength, cache: context.cache)
        let counts = context.counts
        guard counts.contains(where: { $0 > target }) else { return }
        let scores = try scorer.scores(context, state: &state.scorer)
        try scores.check(against: context, scorer: String(describing: Scorer.self))
        try KVSelection.apply(try KVSelection.topK(scores, keep: counts.map { min($0, target) }, context: context), context: context)
    }

    /// The scorer's need.
    public var needsAttentionColumnSums: Bool { scorer.needsAttentionColumnSums }

    /// `"Decoding(<scorer>)"`.
    public var name: String { "Decoding(\(Scorer.self))" }
}
