/// StreamingLLM: keeps the first `sinks` entries (attention sinks) and the most recent ones, drops
/// everything in between. Same set in every layer and head; needs no attention.
///
/// - At the end of the prompt each head keeps `n` entries: the budget's count (kvpress
///   `StreamingLLMPress`: `n = max(1, Int(L * (1 - r)))`, pruned positions `[sinks, sinks + L - n)`;
///   L = 1510, r = 0.5 keeps `{0...3} U {759...1509}`).
/// - While decoding (``KVSchedule/prefillAndDecode``, the default) it is a rolling window: whenever a
///   head exceeds its capacity (the budget's fixed capacity, or what the prompt compression kept)
///   the oldest non-sink entry goes.
/// - `repositionKeys`: after each eviction the kept keys are re-rotated to in-cache positions
///   `0 ..< n` (the paper's positions; kvpress `KeyRerotationPress`), using the shape's RoPE
///   frequencies and pairing. The host must then give new tokens ``KVCache/nextPosition(layer:)``
///   instead of the original position. Off by default (kvpress keeps original positions).
///
/// Paper: Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024
/// (arXiv 2309.17453). References: mit-han-lab/streaming-llm, NVIDIA/kvpress
/// `streaming_llm_press.py`, `key_rerotation_press.py`.
public struct StreamingLLM: KVCachePolicy {
    /// Entries kept per head.
    public let budget: KVBudget
    /// Attention sinks kept at the start.
    public let sinks: Int
    /// Whether kept keys move to in-cache positions.
    public let repositionKeys: Bool
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or a negative sink count.
    public init(budget: KVBudget, sinks: Int = 4, repositionKeys: Bool = false,
                schedule: KVSchedule = .prefillAndDecode) throws(KVError) {
        self.budget = try budget.validated()
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        self.sinks = sinks
        self.repositionKeys = repositionKeys
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double, sinks: Int = 4, repositionKeys: Bool = false,
                schedule: KVSchedule = .prefillAndDecode) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), sinks: sinks, repositionKeys: repositionKeys,
                      schedule: schedule)
    }

    /// Per-sequence state: each head's capacity, once the first prompt was compressed.
    public struct State: Sendable {
        /// `capacity[layer][head]` (nil before the first compression).
        public var capacity: [[Int?]]
        /// `compressed[layer]`: the first prompt was compressed.
        public var compressed: [Bool]
    }

    /// Fresh state.
    public func makeState(shape: KVModelShape) -> State {
        State(capacity: Array(repeating: Array(repeating: nil, count: shape.kvHeads), count: shape.layers),
              compressed: Array(repeating: false, count: shape.layers))
    }

    /// The rows StreamingLLM keeps out of `count` when keeping `keep`: sinks then the most recent
    /// (nil: all). With `keep <= sinks` the first `keep` rows.
    public func keptRows(count: Int, keep: Int) -> [Int]? {
        if keep >= count { return nil }
        if keep <= sinks { return Array(0..<keep) }
        return Array(0..<sinks) + Array((count - (keep - sinks))..<count)
    }

    /// Compresses after the last chunk of the first prompt; later prompts roll the window (or are
    /// left alone with ``KVSchedule/prefill``).
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk {
            state.compressed[l] = false
            for m in state.capacity[l].indices { state.capacity[l][m] = nil }
        }
        guard context.isLastChunk else { return }
        if state.compressed[l] {
            if schedule == .prefillAndDecode { try afterDecode(context, state: &state) }
            return
        }
        let fixed = budget.fixedCapacity(cache: context.cache)
        for m in 0..<context.shape.kvHeads {
            let n = context.count(head: m)
            try evict(context, head: m, keep: budget.keptCount(length: n, cache: context.cache))
            state.capacity[l][m] = fixed ?? context.count(head: m)
        }
        state.compressed[l] = true
    }

    /// Rolls the window.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        guard schedule == .prefillAndDecode else { return }
        let fixed = budget.fixedCapacity(cache: context.cache)
        for m in 0..<context.shape.kvHeads {
            if let cap = state.capacity[context.layer][m] ?? fixed { try evict(context, head: m, keep: cap) }
        }
    }

    func evict(_ context: KVLayerContext, head m: Int, keep: Int) throws(KVError) {
        let n = context.count(head: m)
        guard keep < n else { return }
        // Rows kept: 0 ..< s and n - (keep - s) ..< n, with s = min(sinks, keep): remove the middle.
        let s = min(sinks, keep)
        context.cache.remove(layer: context.layer, head: m, rows: s..<(n - (keep - s)))
        if repositionKeys {
            let kept = keep
            guard context.shape.ropeInverseFrequencies.count == context.shape.headDim / 2 else {
                throw .invalidParameter(name: "ropeInverseFrequencies", value: "[]",
                                        expected: "the model's RoPE inverse frequencies (repositionKeys needs them)")
            }
            context.cache.reposition(layer: context.layer, head: m, to: (0..<kept).map { Int32($0) },
                                     inverseFrequencies: context.shape.ropeInverseFrequencies,
                                     pairing: context.shape.ropePairing)
        }
    }

    /// `"StreamingLLM"`.
    public var name: String { "StreamingLLM" }
}
