/// KeyRerotation: any policy, then the kept keys of each layer move to contiguous positions
/// `0 ..< n` (re-rotated in the cache, ``KVCache/compactPositions(layer:endingAt:rope:)``), so the
/// next token takes position `n` and the compressed prompt looks to the model like a short one.
///
/// Done once per layer, at the end of the first prompt (after the base policy compressed it), as
/// kvpress's `KeyRerotationPress` does; later steps run the base policy alone. A base policy that
/// scores with replays (KVzip) evicts after them, in its cross-layer hook: the keys move after it.
/// Needs the model's RoPE (``KVModelShape/rope``) and row formats (KIVI keys cannot be re-rotated).
///
/// Reference: NVIDIA/kvpress `key_rerotation_press.py` (kept sets are the base press's; the greedy
/// answer over SnapKV at ratio 0.5 equals kvpress 0.5.5's, decoding from position 755).
public struct KeyRerotation<Base: KVCachePolicy>: KVCachePolicy {
    /// The base policy's state and, per layer, whether its keys were moved.
    public struct State {
        /// The base policy's state.
        public var base: Base.State
        /// `rerotated[layer]`: the first prompt's kept keys were moved.
        public var rerotated: [Bool]
        /// Whether the base policy asked for replays after the prompt (it evicts after them).
        var replayed = false
    }

    /// The policy that chooses what stays.
    public let base: Base

    /// Wraps `base`.
    public init(base: Base) { self.base = base }

    /// The base policy's state, nothing moved yet.
    public func makeState(shape: KVModelShape) -> State {
        State(base: base.makeState(shape: shape), rerotated: Array(repeating: false, count: shape.layers))
    }

    /// Forwards to the base policy.
    public func makeRoom(forTokens tokenCount: Int, cache: KVCache, shape: KVModelShape, state: inout State) throws(KVError) {
        try base.makeRoom(forTokens: tokenCount, cache: cache, shape: shape, state: &state.base)
    }

    /// The base policy's hook; after the first prompt's last chunk, the layer's keys move to
    /// positions `0 ..< n`.
    /// - Throws: what the base policy throws; `KVError.invalidParameter` without a RoPE in the
    ///   shape; `.invalidState` for KIVI keys.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk && context.cache.nextPosition(layer: l) == context.totalLength { state.rerotated[l] = false }
        try base.afterPrefill(context, state: &state.base)
        guard context.isLastChunk, !state.rerotated[l] else { return }
        let rope = try context.shape.requireRoPE(for: "KeyRerotation")
        try context.cache.compactPositions(layer: l, endingAt: context.counts.max() ?? 0, rope: rope)
        state.rerotated[l] = true
    }

    /// Forwards to the base policy.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        try base.afterDecode(context, state: &state.base)
    }

    /// Forwards to the base policy; after replays, moves every layer's kept keys to `0 ..< n`.
    /// - Throws: as ``afterPrefill(_:state:)``.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout State, pool: ThreadPool?) throws(KVError) {
        try base.afterPrompt(cache: cache, shape: shape, state: &state.base, pool: pool)
        guard state.replayed else { return }
        state.replayed = false
        let rope = try shape.requireRoPE(for: "KeyRerotation")
        for l in 0..<shape.layers {
            let longest = (0..<shape.kvHeads).map { cache.count(layer: l, head: $0) }.max() ?? 0
            try cache.compactPositions(layer: l, endingAt: longest, rope: rope)
        }
    }

    /// Forwards to the base policy.
    public func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout State) -> [KVReplay] {
        let replays = base.replays(afterPrompt: prompt, cache: cache, state: &state.base)
        state.replayed = !replays.isEmpty
        return replays
    }

    /// Forwards to the base policy.
    public func afterReplay(_ context: KVLayerContext, replay: Int, state: inout State) throws(KVError) {
        try base.afterReplay(context, replay: replay, state: &state.base)
    }

    /// The base policy's need.
    public var needsAttentionColumnSums: Bool { base.needsAttentionColumnSums }

    /// `"KeyRerotation(<base>)"`.
    public var name: String { "KeyRerotation(\(base.name))" }
}
