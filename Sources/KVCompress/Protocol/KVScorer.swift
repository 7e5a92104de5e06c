/// Scores the entries of one layer's cache (the scorer half of a ``KVScoredPolicy``): one f32 per
/// row of every KV head, higher = keep.
///
/// A scorer may keep per-sequence ``State`` (accumulated attention, buffered queries, query
/// statistics): ``observe(_:state:)`` sees every hook call (every prefill chunk and decode step,
/// before any eviction), ``scores(_:state:)`` is asked only when a selection is about to happen.
public protocol KVScorer: Sendable {
    /// Per-sequence state (``KVNoState`` when none).
    associatedtype State = KVNoState

    /// Creates the state for a new sequence.
    func makeState(shape: KVModelShape) -> State

    /// Sees every hook call before selection (default: nothing).
    func observe(_ context: KVLayerContext, state: inout State) throws(KVError)

    /// Scores every row of every KV head of `context.layer`, aligned with the cache rows.
    func scores(_ context: KVLayerContext, state: inout State) throws(KVError) -> KVScores

    /// Whether the scorer reads ``KVLayerContext/attentionColumnSums`` during prefill (default
    /// `false`); a ``KVScoredPolicy`` passes it on as its ``KVCachePolicy/needsAttentionColumnSums``.
    var needsAttentionColumnSums: Bool { get }
}

extension KVScorer where State == KVNoState {
    /// Stateless scorers need no state.
    public func makeState(shape: KVModelShape) -> KVNoState { KVNoState() }
}

extension KVScorer {
    /// Default: nothing to accumulate.
    public func observe(_ context: KVLayerContext, state: inout State) throws(KVError) {}

    /// Default: `false` (the scorer does not read attention column sums).
    public var needsAttentionColumnSums: Bool { false }
}

/// A scorer without state: implement ``scores(_:)`` only.
public protocol KVStatelessScorer: KVScorer where State == KVNoState {
    /// Scores every row of every KV head of `context.layer`.
    func scores(_ context: KVLayerContext) throws(KVError) -> KVScores
}

extension KVStatelessScorer {
    /// Forwards to ``scores(_:)``.
    public func scores(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) -> KVScores {
        try scores(context)
    }
}
