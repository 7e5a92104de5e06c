/// DMS (threshold eviction with a delay): every entry is scored once by any scorer, when it is
/// first seen; once `window` newer entries of its head follow it, it is evicted if that score is
/// below `threshold`. The saving depends on the content, not on a budget.
///
/// A prompt's entries are scored when the prompt ends (all of them at once, so window scorers such
/// as SnapKV see the prompt's last queries, as in kvpress's single-pass prefill); with `decoding`
/// each generated entry is scored at its step. Scores are taken from the scorer's scores of all the
/// layer's rows at that moment. Every later prompt is judged too, and entries still inside the
/// window when a prompt ends are judged as soon as enough newer ones follow (kvpress forgets them
/// when the next prompt starts). Entries are really evicted, per head (kvpress masks them).
///
/// This is kvpress's `DMSPress` (dense prefill, no trained evictor); with ``KVzapScorer`` it is
/// kvpress's KVzap method (`DMSPress(KVzapPress(...), threshold)`, threshold about -4 for the
/// published surrogates' log-scores).
///
/// Paper: Łańcucki et al., "Inference-Time Hyper-Scaling with KV Cache Compression" (DMS,
/// arXiv 2506.05345). Reference: NVIDIA/kvpress `dms_press.py` (defaults: window 128, decoding off).
public struct DMS<Scorer: KVScorer>: KVCachePolicy {
    /// Scores each entry once.
    public let scorer: Scorer
    /// Entries scoring strictly below this are evicted.
    public let threshold: Float
    /// Newer entries of the same head that protect an entry (kvpress `sliding_window_size`, 128).
    public let window: Int
    /// Whether generated entries are scored and judged too (kvpress `decoding`, default false).
    public let decoding: Bool

    /// Per-sequence state.
    public struct State {
        /// The scorer's state.
        public var scorer: Scorer.State
        /// `pending[layer][head]`: scores of the entries not judged yet, oldest first, with their positions.
        var pending: [[[(position: Int32, score: Float)]]]
        /// `scoredThrough[layer][head]`: the newest position scored so far (-1: none).
        var scoredThrough: [[Int32]]
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for a threshold that is not finite or `window < 0`.
    public init(scorer: Scorer, threshold: Float, window: Int = 128, decoding: Bool = false) throws(KVError) {
        guard threshold.isFinite else {
            throw .invalidParameter(name: "threshold", value: "\(threshold)", expected: "a finite score on the scorer's scale")
        }
        guard window >= 0 else { throw .invalidParameter(name: "window", value: "\(window)", expected: ">= 0 entries") }
        self.scorer = scorer
        self.threshold = threshold
        self.window = window
        self.decoding = decoding
    }

    /// Fresh scorer state, nothing scored.
    public func makeState(shape: KVModelShape) -> State {
        State(scorer: scorer.makeState(shape: shape),
              pending: Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers),
              scoredThrough: Array(repeating: Array(repeating: -1, count: shape.kvHeads), count: shape.layers))
    }

    /// The scorer observes every chunk; a prompt's entries are scored and judged when it ends.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk {
            for m in state.pending[l].indices { state.pending[l][m].removeAll() }
            state.scoredThrough[l] = Array(repeating: -1, count: context.shape.kvHeads)
        }
        try scorer.observe(context, state: &state.scorer)
        if context.isLastChunk { try judge(context, state: &state) }
    }

    /// With ``decoding``, the new entry is scored and the entries leaving the window judged.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        try scorer.observe(context, state: &state.scorer)
        if decoding { try judge(context, state: &state) }
    }

    /// Scores the entries not scored yet, then evicts, in each head, the ones that left the window
    /// with a score below the threshold.
    func judge(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        let scores = try scorer.scores(context, state: &state.scorer)
        try scores.check(against: context, scorer: String(describing: Scorer.self))
        var keep = [[Int]?](repeating: nil, count: context.shape.kvHeads)
        for m in 0..<context.shape.kvHeads {
            let positions = context.positions(head: m)
            let headScores = scores[m]
            let last = state.scoredThrough[l][m]
            for (row, p) in positions.enumerated() where p > last {
                state.pending[l][m].append((p, headScores[row]))
                state.scoredThrough[l][m] = max(state.scoredThrough[l][m], p)
            }
            let leaving = state.pending[l][m].count - window
            guard leaving > 0 else { continue }
            let evicted = Set(state.pending[l][m].prefix(leaving).filter { $0.score < threshold }.map(\.position))
            state.pending[l][m].removeFirst(leaving)
            if !evicted.isEmpty { keep[m] = positions.indices.filter { !evicted.contains(positions[$0]) } }
        }
        try KVSelection.apply(keep, context: context)
    }

    /// The scorer's need.
    public var needsAttentionColumnSums: Bool { scorer.needsAttentionColumnSums }

    /// `"DMS(<scorer>)"`.
    public var name: String { "DMS(\(Scorer.self))" }
}
