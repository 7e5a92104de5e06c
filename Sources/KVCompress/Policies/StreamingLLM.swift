/// StreamingLLM: keeps the first `sinks` entries (attention sinks) and the most recent ones, drops
/// everything in between. Same set in every layer and head; needs no attention.
///
/// Two ways to size it:
/// - **By sizes** (the paper's and llama.cpp's way): `StreamingLLM(sinks: 4, window: 1020)` holds at
///   most `sinks + window` entries per head at every moment: before each step (prompt chunk or
///   generated token) the oldest non-sink entries go so that the step's tokens fit, so the current
///   token attends to the sinks and the `window - 1` tokens before it plus itself (a prompt chunk
///   longer than `window` cannot fit; then the head holds the sinks and the chunk until the chunk
///   ends, and is cut back to `sinks + window` right after).
/// - **By ratio** (kvpress `StreamingLLMPress`): at the end of the first prompt each head keeps
///   `n = max(1, Int(L * (1 - r)))` entries, pruned positions `[sinks, sinks + L - n)` (L = 1510,
///   r = 0.5 keeps `{0...3} U {759...1509}`: kvpress parity). While decoding
///   (``KVSchedule/prefillAndDecode``, the default) the window then rolls at a capacity of
///   `max(n, KVBudget.minimumRollingCapacity)` entries, so a short prompt does not leave a window
///   of a few tokens.
///
/// `repositionKeys` (off by default, as in kvpress) moves the kept keys to *in-cache positions*,
/// the paper's positions: the kept entries sit at consecutive positions and the next token comes
/// right after them, so the model never sees a distance larger than the cache and can run on a
/// stream far longer than its context length. Implementation: RoPE attention depends only on
/// position differences, so instead of renumbering every entry `0 ..< n` after each eviction,
/// entries take the consecutive positions that end just before the next token
/// (``KVCache/compactPositions(layer:endingAt:rope:)``): the window keeps its positions and only
/// the sinks move, by the number of tokens evicted; when the next position would reach the model's
/// context length, every entry moves down to start at 0 (one rotation per entry, every
/// `contextLength - capacity` tokens). The host must take positions from the cache
/// (``KVCompressor`` does). The sinks move at every eviction; the policy keeps exact f32 copies of
/// their keys (``State/sinkKeys``) and rotates each move from those, so an f16 or bf16 sink key is
/// rounded once, not once per move.
///
/// Paper: Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024
/// (arXiv 2309.17453). References: mit-han-lab/streaming-llm, NVIDIA/kvpress
/// `streaming_llm_press.py`, `key_rerotation_press.py`.
public struct StreamingLLM: KVCachePolicy {
    /// Entries kept per head: a ratio (kvpress) or a fixed capacity (`.tokens(sinks + window)`).
    public let budget: KVBudget
    /// Attention sinks kept at the start.
    public let sinks: Int
    /// Whether kept keys move to in-cache positions.
    public let repositionKeys: Bool
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy with any budget.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or a negative sink count.
    public init(budget: KVBudget, sinks: Int = 4, repositionKeys: Bool = false,
                schedule: KVSchedule = .prefillAndDecode) throws(KVError) {
        self.budget = try budget.validated()
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        self.sinks = sinks
        self.repositionKeys = repositionKeys
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed at the end of the first prompt).
    /// - Throws: `KVError.invalidParameter` for a ratio outside `[0, 1)` or a negative sink count.
    public init(compressionRatio: Double, sinks: Int = 4, repositionKeys: Bool = false,
                schedule: KVSchedule = .prefillAndDecode) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), sinks: sinks, repositionKeys: repositionKeys,
                      schedule: schedule)
    }

    /// Creates the policy by sizes: `sinks` attention sinks plus the `window` most recent tokens
    /// (the current one included), `sinks + window` entries per head at most.
    /// - Throws: `KVError.invalidParameter` for a negative sink count or a window smaller than 1.
    public init(sinks: Int = 4, window: Int, repositionKeys: Bool = false) throws(KVError) {
        guard window >= 1 else {
            throw .invalidParameter(name: "window", value: "\(window)", expected: ">= 1 recent tokens")
        }
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        try self.init(budget: .tokens(sinks + window), sinks: sinks, repositionKeys: repositionKeys)
    }

    /// The recent-token window when configured by sizes (capacity minus sinks), nil for a ratio.
    public var window: Int? {
        if case .tokens(let n) = budget { return max(0, n - sinks) }
        return nil
    }

    /// Per-sequence state: each head's rolling capacity, once known, and with `repositionKeys`
    /// exact copies of the sink keys.
    public struct State: Sendable {
        /// `capacity[layer][head]` (nil before the first prompt was compressed, for a ratio).
        public var capacity: [[Int?]]
        /// `compressed[layer]`: the first prompt was compressed.
        public var compressed: [Bool]
        /// `sinkKeys[layer][head]`: f32 copies of the head's sink keys, row after row, as first
        /// stored (the sinks move at every eviction; moving them from these copies rounds each key
        /// once instead of once per move, which in an f16 cache would stop the slow RoPE pairs
        /// from turning at all). `sinks x headDim` floats per head at most.
        public var sinkKeys: [[[Float]]]
        /// `sinkOrigins[layer][head]`: the position each copied key was rotated at.
        public var sinkOrigins: [[[Int32]]]
    }

    /// Fresh state.
    public func makeState(shape: KVModelShape) -> State {
        let empty = Array(repeating: Array(repeating: [Float](), count: shape.kvHeads), count: shape.layers)
        return State(capacity: Array(repeating: Array(repeating: nil, count: shape.kvHeads), count: shape.layers),
                     compressed: Array(repeating: false, count: shape.layers), sinkKeys: empty,
                     sinkOrigins: empty.map { $0.map { _ in [] } })
    }

    /// The rows StreamingLLM keeps out of `count` when keeping `keep`: sinks then the most recent
    /// (nil: all). With `keep <= sinks` the first `keep` rows.
    public func keptRows(count: Int, keep: Int) -> [Int]? {
        if keep >= count { return nil }
        if keep <= sinks { return Array(0..<keep) }
        return Array(0..<sinks) + Array((count - (keep - sinks))..<count)
    }

    /// Before a step: rolls each head's window so that the step's tokens fit in its capacity, and
    /// with `repositionKeys` moves positions back to 0 when the step would reach the model's
    /// context length.
    public func makeRoom(forTokens tokenCount: Int, cache: KVCache, shape: KVModelShape,
                         state: inout State) throws(KVError) {
        guard schedule == .prefillAndDecode else { return }
        let fixed = budget.fixedCapacity(cache: cache)
        for l in 0..<shape.layers {
            var evicted = false
            for m in 0..<shape.kvHeads {
                guard let cap = state.capacity[l][m] ?? fixed else { continue }
                let n = cache.count(layer: l, head: m)
                guard n + tokenCount > cap else { continue }
                // Sinks stay even when the step alone fills the capacity.
                try evict(cache, layer: l, head: m, keep: max(cap - tokenCount, min(sinks, n)))
                evicted = true
            }
            if evicted && repositionKeys { try moveToCachePositions(cache, layer: l, shape: shape, state: &state) }
        }
        if repositionKeys, let limit = shape.contextLength, cache.nextPosition + tokenCount > limit {
            for l in 0..<shape.layers {
                let longest = (0..<shape.kvHeads).map { cache.count(layer: l, head: $0) }.max() ?? 0
                try moveToCachePositions(cache, layer: l, endingAt: longest, shape: shape, state: &state)
            }
        }
    }

    /// Moves layer `l`'s entries to consecutive positions ending just before `end` (default: the
    /// layer's next position), the sinks from their exact copies.
    private func moveToCachePositions(_ cache: KVCache, layer l: Int, endingAt end: Int? = nil, shape: KVModelShape,
                                      state: inout State) throws(KVError) {
        let rope = try shape.requireRoPE(for: "repositionKeys")
        let end = end ?? cache.nextPosition(layer: l)
        let d = shape.headDim
        for m in 0..<shape.kvHeads {
            let n = cache.count(layer: l, head: m)
            let s = min(sinks, n)
            guard s > 0 else { continue }
            // Sinks are never evicted, so row j < sinks keeps its token: copy rows not copied yet.
            let positions = cache.positions(layer: l, head: m)
            for j in state.sinkOrigins[l][m].count..<s {
                state.sinkKeys[l][m] += cache.key(layer: l, head: m, row: j)
                state.sinkOrigins[l][m].append(positions[j])
            }
            let targets = (0..<s).map { Int32(end - n + $0) }
            guard targets != Array(positions[0..<s]) else { continue }
            var keys = Array(state.sinkKeys[l][m][0..<(s * d)])
            rope.apply(to: &keys, heads: 1, positions: (0..<s).map { targets[$0] - state.sinkOrigins[l][m][$0] })
            try cache.setKeys(layer: l, head: m, rows: 0..<s, keys: keys, positions: targets)
        }
        try cache.compactPositions(layer: l, endingAt: end, rope: rope)
    }

    /// At the end of the first prompt: keeps the budget's count (kvpress parity for a ratio) and
    /// fixes each head's rolling capacity. Later prompts are cut back to capacity (or left alone
    /// with ``KVSchedule/prefill``).
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk {
            state.compressed[l] = false
            for m in state.capacity[l].indices {
                state.capacity[l][m] = nil
                state.sinkKeys[l][m] = []
                state.sinkOrigins[l][m] = []
            }
        }
        guard context.isLastChunk else {
            // A fixed capacity also holds inside a long prompt.
            if schedule == .prefillAndDecode && budget.fixedCapacity(cache: context.cache) != nil {
                try enforceCapacity(context, state: &state)
            }
            return
        }
        if state.compressed[l] {
            if schedule == .prefillAndDecode { try enforceCapacity(context, state: &state) }
            return
        }
        var evicted = false
        for m in 0..<context.shape.kvHeads {
            let n = context.count(head: m)
            let keep = budget.keptCount(length: n, cache: context.cache)
            if keep < n {
                try evict(context.cache, layer: l, head: m, keep: keep)
                evicted = true
            }
            state.capacity[l][m] = budget.rollingCapacity(kept: keep, cache: context.cache)
        }
        state.compressed[l] = true
        if evicted && repositionKeys { try moveToCachePositions(context.cache, layer: l, shape: context.shape, state: &state) }
    }

    /// Cuts heads over capacity back to it (normally nothing: ``makeRoom(forTokens:cache:shape:state:)``
    /// made room before the step).
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        guard schedule == .prefillAndDecode else { return }
        try enforceCapacity(context, state: &state)
    }

    private func enforceCapacity(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let fixed = budget.fixedCapacity(cache: context.cache)
        var evicted = false
        for m in 0..<context.shape.kvHeads {
            if let cap = state.capacity[context.layer][m] ?? fixed, context.count(head: m) > cap {
                try evict(context.cache, layer: context.layer, head: m, keep: cap)
                evicted = true
            }
        }
        if evicted && repositionKeys {
            try moveToCachePositions(context.cache, layer: context.layer, shape: context.shape, state: &state)
        }
    }

    /// Keeps the sinks and the most recent `keep - sinks` rows of one head.
    private func evict(_ cache: KVCache, layer: Int, head m: Int, keep: Int) throws(KVError) {
        let n = cache.count(layer: layer, head: m)
        guard keep < n else { return }
        // Rows kept: 0 ..< s and n - (keep - s) ..< n, with s = min(sinks, keep): remove the middle.
        let s = min(sinks, keep)
        try cache.remove(layer: layer, head: m, rows: s..<(n - (keep - s)))
    }

    /// `"StreamingLLM"`.
    public var name: String { "StreamingLLM" }
}
