/// Composed: two policies one after the other in every hook, the second acting on the cache the
/// first left (kvpress `ComposedPress`): `Composed(SnapKV(0.5), Knorm(0.5))` keeps about a quarter.
/// Nest to chain more. When the first policy evicted in a hook, the second sees the same queries but
/// no attention column sums (they described the rows before), and probes the attention itself if it
/// needs it, so its view is consistent (kvpress hands later presses the original attention weights).
///
/// Reference: NVIDIA/kvpress `composed_press.py`.
public struct Composed<First: KVCachePolicy, Second: KVCachePolicy>: KVCachePolicy {
    /// Both policies' states.
    public struct State {
        /// The first policy's state.
        public var first: First.State
        /// The second policy's state.
        public var second: Second.State
        /// How many of the pending replays are the first policy's.
        var firstReplays = 0
    }

    /// Runs first.
    public let first: First
    /// Runs on what the first left.
    public let second: Second

    /// Chains two policies.
    public init(_ first: First, _ second: Second) {
        self.first = first
        self.second = second
    }

    /// Both states.
    public func makeState(shape: KVModelShape) -> State {
        State(first: first.makeState(shape: shape), second: second.makeState(shape: shape))
    }

    /// Both policies make room, in order.
    public func makeRoom(forTokens tokenCount: Int, cache: KVCache, shape: KVModelShape, state: inout State) throws(KVError) {
        try first.makeRoom(forTokens: tokenCount, cache: cache, shape: shape, state: &state.first)
        try second.makeRoom(forTokens: tokenCount, cache: cache, shape: shape, state: &state.second)
    }

    /// The first policy's hook, then the second's.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let counts = context.counts
        try first.afterPrefill(context, state: &state.first)
        try second.afterPrefill(context.counts == counts ? context : context.over(), state: &state.second)
    }

    /// The first policy's hook, then the second's.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let counts = context.counts
        try first.afterDecode(context, state: &state.first)
        try second.afterDecode(context.counts == counts ? context : context.over(), state: &state.second)
    }

    /// Both policies' cross-layer hooks, in order.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout State, pool: ThreadPool?) throws(KVError) {
        try first.afterPrompt(cache: cache, shape: shape, state: &state.first, pool: pool)
        try second.afterPrompt(cache: cache, shape: shape, state: &state.second, pool: pool)
    }

    /// The first policy's replays, then the second's.
    public func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout State) -> [KVReplay] {
        let first = first.replays(afterPrompt: prompt, cache: cache, state: &state.first)
        state.firstReplays = first.count
        return first + second.replays(afterPrompt: prompt, cache: cache, state: &state.second)
    }

    /// The hook of the policy whose replay runs.
    public func afterReplay(_ context: KVLayerContext, replay: Int, state: inout State) throws(KVError) {
        if replay < state.firstReplays {
            try first.afterReplay(context, replay: replay, state: &state.first)
        } else {
            try second.afterReplay(context, replay: replay - state.firstReplays, state: &state.second)
        }
    }

    /// Whether either policy reads attention column sums.
    public var needsAttentionColumnSums: Bool { first.needsAttentionColumnSums || second.needsAttentionColumnSums }

    /// `"Composed(<first>, <second>)"`.
    public var name: String { "Composed(\(first.name), \(second.name))" }
}
