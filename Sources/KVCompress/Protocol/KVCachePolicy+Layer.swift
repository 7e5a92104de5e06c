extension KVCachePolicy {
    /// Runs this policy once on one layer, with fresh per-sequence state, and returns the kept
    /// original positions of every KV head (ascending): what kvpress parity fixtures compare.
    ///
    /// Meant for a single-pass prefill context (``KVLayerContext/isFirstChunk`` and
    /// ``KVLayerContext/isLastChunk`` true) over a cache layer that holds the whole prompt.
    public func compressLayer(_ context: KVLayerContext) throws(KVError) -> [[Int]] {
        var state = makeState(shape: context.shape)
        switch context.phase {
        case .prefill: try afterPrefill(context, state: &state)
        case .decode: try afterDecode(context, state: &state)
        case .replay: try afterReplay(context, replay: 0, state: &state)
        }
        return context.cache.keptPositions(layer: context.layer)
    }
}
