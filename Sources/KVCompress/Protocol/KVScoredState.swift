/// Per-sequence state of a ``KVScoredPolicy``: its scorer's state and each head's decode capacity.
public struct KVScoredState<ScorerState> {
    /// The scorer's state.
    public var scorer: ScorerState
    /// `capacity[layer][head]`: entries to hold while decoding (nil: unbounded), set when the
    /// prefill compression runs.
    public var capacity: [[Int?]]
    /// `compressed[layer]`: whether the sequence's first prompt was compressed in that layer.
    public var compressed: [Bool]

    /// Creates the state.
    public init(scorer: ScorerState, layers: Int, kvHeads: Int) {
        self.scorer = scorer
        capacity = Array(repeating: Array(repeating: nil, count: kvHeads), count: layers)
        compressed = Array(repeating: false, count: layers)
    }
}
