/// SimLayerKV: finds "lazy" layers, whose last prompt query puts almost all of its attention on the
/// first and the most recent tokens, and keeps only those tokens in them; other layers keep
/// everything. The decision is per layer, once, at the end of the first prompt.
///
/// At the end of the prompt (length `L > initial + recent + last`), for each layer: the attention
/// of the last `last` prompt queries over the rows before them, averaged over query heads and those
/// queries; the mass on the first `initial` rows plus the `recent` rows before the window. Above
/// `lazyThreshold` the layer is lazy and keeps the first `initial` and the last `recent - last`
/// rows of every head, as kvpress does. While decoding, a lazy layer stays a window of that size
/// (the oldest non-initial entry goes as each new one comes, as in the paper's decoding), so its
/// memory stays bounded; kvpress leaves lazy layers to grow again.
///
/// The budget is the threshold's outcome, not a ratio: the catalog's `--ratio` does not apply.
///
/// Paper: Zhang et al., "SimLayerKV: A Simple Framework for Layer-Level KV Cache Reduction"
/// (arXiv 2410.13846). Reference: NVIDIA/kvpress `simlayerkv_press.py` (`SimLayerKVPress`; kept
/// sets equal to kvpress 0.5.5's at threshold 0.9 on the fixture prompt).
public struct SimLayerKV: KVCachePolicy {
    /// Attention mass on the initial and recent tokens above which a layer is lazy (kvpress's
    /// default 1.0 turns the press off; its recommendations: Llama 3 0.9, Llama 2 0.65, Mistral 0.8,
    /// Qwen 0.85. The default here is 0.9, for the Llama family).
    public let lazyThreshold: Double
    /// Prompt queries whose attention decides (kvpress default 1).
    public let lastQueries: Int
    /// Recent tokens counted (and, minus ``lastQueries``, kept) in a lazy layer (default 1024).
    public let recentTokens: Int
    /// Initial tokens counted and kept in a lazy layer (default 4).
    public let initialTokens: Int

    /// Per-sequence state.
    public struct State: Sendable {
        var window: KVQueryWindow
        /// `lazy[layer]`: nil until the layer's first prompt ended, then whether it is lazy.
        public internal(set) var lazy: [Bool?]
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for a threshold outside `[0, 1]`, fewer than one last
    ///   query, `recentTokens <= lastQueries` or negative `initialTokens`.
    public init(lazyThreshold: Double = 0.9, lastQueries: Int = 1, recentTokens: Int = 1024, initialTokens: Int = 4) throws(KVError) {
        guard lazyThreshold >= 0, lazyThreshold <= 1 else {
            throw .invalidParameter(name: "lazyThreshold", value: "\(lazyThreshold)", expected: "a fraction in [0, 1]")
        }
        guard lastQueries >= 1 else { throw .invalidParameter(name: "lastQueries", value: "\(lastQueries)", expected: ">= 1") }
        guard recentTokens > lastQueries else {
            throw .invalidParameter(name: "recentTokens", value: "\(recentTokens)", expected: "more than lastQueries = \(lastQueries)")
        }
        guard initialTokens >= 0 else { throw .invalidParameter(name: "initialTokens", value: "\(initialTokens)", expected: ">= 0") }
        self.lazyThreshold = lazyThreshold
        self.lastQueries = lastQueries
        self.recentTokens = recentTokens
        self.initialTokens = initialTokens
    }

    /// Entries a lazy layer keeps per head.
    public var lazyCapacity: Int { initialTokens + recentTokens - lastQueries }

    /// Empty query windows, no decision yet.
    public func makeState(shape: KVModelShape) -> State {
        State(window: KVQueryWindow(size: lastQueries, shape: shape), lazy: Array(repeating: nil, count: shape.layers))
    }

    /// Buffers the last queries; at the end of the first prompt decides whether the layer is lazy
    /// and, if so, keeps its initial and recent entries.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk { state.lazy[l] = nil }
        if let lazy = state.lazy[l] {
            if lazy { try roll(context) }
            return
        }
        state.window.record(context)
        guard context.isLastChunk else { return }
        state.lazy[l] = false
        let rows = context.count(head: 0)
        guard lazyThreshold < 1, rows > initialTokens + recentTokens + lastQueries,
              context.counts.allSatisfy({ $0 == rows }) else { return }
        let block = state.window.attention(context)
        let seen = rows - lastQueries   // the rows before the window
        var mass = 0.0
        for h in 0..<block.heads {
            for q in 0..<block.queryCount {
                for j in 0..<initialTokens { mass += Double(block[h, q, j]) }
                for j in (seen - recentTokens)..<seen { mass += Double(block[h, q, j]) }
            }
        }
        mass /= Double(block.heads * block.queryCount)
        guard mass > lazyThreshold else { return }
        state.lazy[l] = true
        try roll(context)
    }

    /// Keeps a lazy layer at its window while decoding.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        if state.lazy[context.layer] == true { try roll(context) }
    }

    /// Removes each head's oldest entries after the initial ones down to ``lazyCapacity``.
    private func roll(_ context: KVLayerContext) throws(KVError) {
        for m in 0..<context.shape.kvHeads {
            let excess = context.count(head: m) - lazyCapacity
            if excess > 0 {
                try context.cache.remove(layer: context.layer, head: m, rows: initialTokens..<(initialTokens + excess))
            }
        }
    }

    /// `"SimLayerKV"`.
    public var name: String { "SimLayerKV" }
}
