/// Compactor's blend (kvpress `CompactorPress`): `blending x` the z-scored leverage of the pre-RoPE
/// keys (``LeverageScoreScorer``) plus the z-scored non-causal tile attention
/// (``NonCausalAttentionScorer``), both computed without the first `sinkStart` and the last `sinkEnd`
/// prompt tokens, which then score the maximum of the others (kvpress pads with the maximum, not
/// above it).
///
/// Paper: Chari and Van Durme, "Compactor: Calibrated Query-Agnostic KV Cache Compression with
/// Approximate Leverage Scores" (arXiv 2507.08143). Reference: NVIDIA/kvpress `compactor_press.py`.
public struct CompactorScorer: KVScorer {
    /// Weight of the leverage term (kvpress: the compression ratio, 0.35 without one).
    public let blending: Float
    /// The leverage part.
    public let leverage: LeverageScoreScorer
    /// The attention part.
    public let attention: NonCausalAttentionScorer

    /// Creates the scorer with kvpress's defaults.
    /// - Throws: `KVError.invalidParameter` for a non-finite blending, negative sinks, a tile or
    ///   sketch dimension below 1.
    public init(blending: Double = 0.35, sinkStart: Int = 8, sinkEnd: Int = 4, tile: Int = 256, sketchDimension: Int = 48,
                seed: UInt32 = 0) throws(KVError) {
        guard blending.isFinite else { throw .invalidParameter(name: "blending", value: "\(blending)", expected: "a finite weight") }
        self.blending = Float(blending)
        leverage = try LeverageScoreScorer(sketchDimension: sketchDimension, seed: seed, skipFirst: sinkStart, skipLast: sinkEnd)
        attention = try NonCausalAttentionScorer(tile: tile, skipFirst: sinkStart, skipLast: sinkEnd)
    }

    /// Both parts' states.
    public struct State: @unchecked Sendable {
        var leverage: LeverageScoreScorer.State
        var attention: NonCausalAttentionScorer.State
    }

    /// Fresh states.
    public func makeState(shape: KVModelShape) -> State {
        State(leverage: leverage.makeState(shape: shape), attention: attention.makeState(shape: shape))
    }

    /// The attention part observes the prompt.
    public func observe(_ context: KVLayerContext, state: inout State) throws(KVError) {
        try attention.observe(context, state: &state.attention)
    }

    /// The blend; the sinks (and rows newer than the prompt) get the maximum of the rest.
    public func scores(_ context: KVLayerContext, state: inout State) throws(KVError) -> KVScores {
        let l = try leverage.scores(context, state: &state.leverage)
        let a = try attention.scores(context, state: &state.attention)
        let outside = Float.greatestFiniteMagnitude
        var heads = l.heads.indices.map { m in
            l.heads[m].indices.map { j in l.heads[m][j] == outside || a.heads[m][j] == outside ? outside : blending * l.heads[m][j] + a.heads[m][j] }
        }
        let top = heads.joined().filter { $0 != outside }.max() ?? 0
        for m in heads.indices { for j in heads[m].indices where heads[m][j] == outside { heads[m][j] = top } }
        return KVScores(heads: heads)
    }
}
