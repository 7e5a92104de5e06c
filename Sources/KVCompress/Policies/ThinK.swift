/// ThinK: query-driven pruning of key channels. At the end of the first prompt, each KV head scores
/// its key channels by how much they can add to `q . k`, and its prompt entries keep only the best
/// channels of their keys ("narrower key rows": ``KVCache/pruneKeyChannels(layer:head:keeping:rows:)``
/// really stores fewer bytes); values and tokens are untouched.
///
/// Channel `c` of KV head `m` scores `qe[c] * ke[c]`: `qe` is the mean over the head's query group and
/// the last ``windowSize`` prompt queries (post-RoPE) of `q_c^2`, `ke` the mean over every cached
/// key of `k_c^2` (the paper's `||Q[:, c]|| ||K[:, c]||` ranks the channels the same way). The
/// `Int(headDim * keyChannelRatio)` lowest channels are dropped from every entry of the prompt but
/// the ``recentEntries`` newest; attention then reads the pruned keys with the queries' kept
/// channels, exactly as kvpress's zeroed channels do. Entries appended later (decoding, later
/// prompts) keep every channel, as in kvpress and the original.
///
/// Paper: Xu et al., "ThinK: Thinner Key Cache by Query-Driven Pruning", ICLR 2025 (arXiv
/// 2407.21018); reference code SalesforceAIResearch/ThinK (`key_pruner_query_driven`, which keeps the
/// 32 most recent keys whole) and NVIDIA/kvpress `think_press.py` (`ThinKPress`, which zeroes the
/// channels in place and so frees nothing).
public struct ThinK: KVCachePolicy {
    /// Fraction of each head's key channels dropped, in `(0, 1)` (the cache shrinks by about half
    /// of it: values keep every channel).
    public let keyChannelRatio: Double
    /// Prompt queries that score the channels (kvpress and the original: 32).
    public let windowSize: Int
    /// Newest prompt entries that keep whole keys (kvpress: 0, the default; the original: 32).
    public let recentEntries: Int

    /// Per-sequence state.
    public struct State: Sendable {
        var window: KVQueryWindow
        /// Whether each layer's first prompt was pruned.
        var pruned: [Bool]
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for a ratio outside `(0, 1)`, a window below 1 or a
    ///   negative number of recent entries.
    public init(keyChannelRatio: Double, windowSize: Int = 32, recentEntries: Int = 0) throws(KVError) {
        guard keyChannelRatio > 0 && keyChannelRatio < 1 else {
            throw .invalidParameter(name: "keyChannelRatio", value: "\(keyChannelRatio)", expected: "a fraction in (0, 1)")
        }
        guard windowSize >= 1 else { throw .invalidParameter(name: "windowSize", value: "\(windowSize)", expected: ">= 1") }
        guard recentEntries >= 0 else {
            throw .invalidParameter(name: "recentEntries", value: "\(recentEntries)", expected: ">= 0")
        }
        self.keyChannelRatio = keyChannelRatio
        self.windowSize = windowSize
        self.recentEntries = recentEntries
    }

    /// Empty query windows; nothing pruned.
    public func makeState(shape: KVModelShape) -> State {
        State(window: KVQueryWindow(size: windowSize, shape: shape), pruned: Array(repeating: false, count: shape.layers))
    }

    /// Buffers the window queries; at the end of the first prompt prunes the layer's key channels.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk { state.pruned[l] = false }
        guard !state.pruned[l] else { return }
        state.window.record(context)
        guard context.isLastChunk else { return }
        state.pruned[l] = true
        for (m, channels) in try keptChannels(context, window: state.window).enumerated() {
            let n = context.count(head: m) - recentEntries
            guard n > 0 else { continue }
            try context.cache.pruneKeyChannels(layer: l, head: m, keeping: channels, rows: n)
        }
    }

    /// Nothing while decoding.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {}

    /// Each KV head's kept key channels (ascending): all but the `Int(headDim * keyChannelRatio)`
    /// lowest by query energy x key energy (ties: the lower channel is dropped first).
    func keptChannels(_ context: KVLayerContext, window: KVQueryWindow) throws(KVError) -> [[Int]] {
        let shape = context.shape, l = context.layer
        let d = shape.headDim, g = shape.heads / shape.kvHeads
        let dropped = Int(Double(d) * keyChannelRatio)
        let queries = window.queries[l]
        let w = window.count(layer: l)
        return (0..<shape.kvHeads).map { m in
            var qe = [Double](repeating: 0, count: d)
            for t in 0..<w {
                for h in (m * g)..<((m + 1) * g) {
                    for c in 0..<d {
                        let q = Double(queries[(t * shape.heads + h) * d + c])
                        qe[c] += q * q
                    }
                }
            }
            var ke = [Double](repeating: 0, count: d)
            let n = context.count(head: m)
            let keys = context.cache.head(l, m).keys(0..<n)
            for j in 0..<n {
                for c in 0..<d { ke[c] += Double(keys[j * d + c]) * Double(keys[j * d + c]) }
            }
            let score = (0..<d).map { qe[$0] / Double(max(w * g, 1)) * ke[$0] / Double(max(n, 1)) }
            let order = (0..<d).sorted { score[$0] < score[$1] || (score[$0] == score[$1] && $0 < $1) }
            let droppedChannels = Set(order.prefix(dropped))
            return (0..<d).filter { !droppedChannels.contains($0) }
        }
    }

    /// `"ThinK"`.
    public var name: String { "ThinK" }
}
