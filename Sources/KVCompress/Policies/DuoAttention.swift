/// DuoAttention: retrieval heads keep the whole cache; streaming heads keep only attention sinks
/// and recent tokens, during prefill and decoding, with their memory really freed.
///
/// Which heads are which comes from a ``DuoAttentionPattern`` (a gate per layer and KV head,
/// calibrated once per model: the reference trains the gates; `kvcompress calibrate duo` estimates
/// them on a CPU) and one of two splits:
/// - **By sparsity** (the reference's deployment, `init(pattern:sparsity:seed:)`): a fraction
///   `sparsity` of all heads stream, chosen by a global quantile of the gates with seeded
///   tie-breaking noise (``DuoAttentionPattern/retrievalHeads(sparsity:seed:)``). Streaming heads
///   attend Λ-shaped from the first prompt token on (``attentionWindows(layer:state:)``: the
///   `sinkSize` first entries and the `recentSize` most recent positions), so their prefill
///   attention skips what they will not keep; after every prompt chunk and every decode step each
///   streaming head is cut to `sinkSize + recentSize - 1` entries (what the next token may see), so
///   its memory stays bounded however long the sequence runs.
/// - **By a budget** (`init(pattern:budget:)`: a fraction of the full cache's bytes, what
///   equal-memory comparisons use): the first prompt is prefilled densely, as the reference's first
///   chunk is; at its end the heads with the highest gates become retrieval heads while the budget
///   allows, every other head streams at `sinkSize + recentSize - 1` entries (fewer, sinks first,
///   when even all-streaming heads exceed the budget). From then on it behaves as the sparsity split
///   (streaming heads windowed and cut; retrieval heads grow with the sequence).
///
/// kvpress's `DuoAttentionPress` only masks the middle of streaming heads at prefill (no memory is
/// saved) and lets them grow again while decoding; here they are evicted and held.
///
/// Paper: Xiao et al., "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and
/// Streaming Heads" (ICLR 2025, arXiv 2410.10819). References: mit-han-lab/duo-attention
/// (`duo_attn/utils.py`, `duo_attn/patch/static_kv_cache.py`), NVIDIA/kvpress `duo_attention_press.py`.
public struct DuoAttention: KVCachePolicy {
    /// How the retrieval heads are chosen.
    public enum Split: Sendable, Equatable {
        /// A fraction of all heads streams (the reference's `sparsity`), chosen by gate quantile.
        case sparsity(Double, seed: UInt32)
        /// These heads (`[layer][head]` true) keep everything, the others stream.
        case heads([[Bool]])
        /// As many of the highest-gated heads keep everything as the budget allows, decided at the
        /// end of the first prompt.
        case budget(KVBudget)
    }

    /// The head pattern.
    public let pattern: DuoAttentionPattern
    /// How retrieval heads are chosen.
    public let split: Split

    /// Per-sequence state.
    public struct State: Sendable {
        /// `[layer][head]`: true for a retrieval head (nil until decided, or when the pattern does
        /// not fit the model: the first hook then throws).
        public internal(set) var retrieval: [[Bool]]?
        /// The window streaming heads attend through and are cut to.
        public internal(set) var window: KVAttentionWindow
    }

    /// Creates the policy with a fraction of streaming heads (the reference's default 0.5).
    /// - Throws: `KVError.invalidParameter` for a sparsity outside `[0, 1]`.
    public init(pattern: DuoAttentionPattern, sparsity: Double = 0.5, seed: UInt32 = 0) throws(KVError) {
        guard sparsity >= 0 && sparsity <= 1 else {
            throw .invalidParameter(name: "sparsity", value: "\(sparsity)", expected: "the fraction of streaming heads, in [0, 1]")
        }
        self.pattern = pattern
        split = .sparsity(sparsity, seed: seed)
    }

    /// Creates the policy with explicit retrieval heads (`[layer][head]`, true: keeps everything),
    /// for example to measure one streaming head at a time (`kvcompress calibrate duo`).
    /// - Throws: `KVError.shapeMismatch` unless the flags have the pattern's shape.
    public init(pattern: DuoAttentionPattern, retrievalHeads: [[Bool]]) throws(KVError) {
        guard retrievalHeads.count == pattern.gates.layers,
              retrievalHeads.allSatisfy({ $0.count == pattern.gates.kvHeads }) else {
            throw .shapeMismatch("retrieval-head flags must be \(pattern.gates.layers) layers x \(pattern.gates.kvHeads) KV heads")
        }
        self.pattern = pattern
        split = .heads(retrievalHeads)
    }

    /// Creates the policy with a budget for the whole cache (see the type's documentation).
    /// - Throws: `KVError.invalidParameter` for an invalid budget.
    public init(pattern: DuoAttentionPattern, budget: KVBudget) throws(KVError) {
        self.pattern = pattern
        split = .budget(try budget.validated())
    }

    /// The pattern's window.
    private var patternWindow: KVAttentionWindow {
        KVAttentionWindow(sinks: pattern.sinkSize, recent: pattern.recentSize)
    }

    /// The split, when it is known before the prompt (by sparsity, for a pattern that fits the shape).
    public func makeState(shape: KVModelShape) -> State {
        var state = State(retrieval: nil, window: patternWindow)
        guard pattern.gates.layers == shape.layers, pattern.gates.kvHeads == shape.kvHeads else { return state }
        switch split {
        case .sparsity(let s, let seed): state.retrieval = pattern.retrievalHeads(sparsity: s, seed: seed)
        case .heads(let flags): state.retrieval = flags
        case .budget: break
        }
        return state
    }

    /// Streaming heads' windows, once the split is known.
    public func attentionWindows(layer: Int, state: State) -> [KVAttentionWindow?]? {
        guard let retrieval = state.retrieval else { return nil }
        return retrieval[layer].map { $0 ? nil : state.window }
    }

    /// Decides a budget split at the end of the first prompt, then cuts streaming heads.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        if context.layer == 0 && context.isFirstChunk {
            try pattern.gates.check(context.shape, what: "DuoAttention pattern")
            if case .budget = split { state = makeState(shape: context.shape) }
        }
        if state.retrieval == nil, case .budget(let budget) = split {
            guard context.isLastChunk else { return }
            let length = context.counts.max() ?? 0
            let split = KVRetrievalSplit(budget: budget, length: length, cache: context.cache,
                                         rankedHeads: pattern.gates.count, streamingMinimum: patternWindow.sinks + patternWindow.recent - 1,
                                         streamingEntryBytes: context.cache.bytesPerEntry, fillStreaming: false)
            state.retrieval = pattern.gates.top(split.retrievalCount)
            let cap = split.streamingEntries
            let sinks = min(pattern.sinkSize, cap)
            state.window = KVAttentionWindow(sinks: sinks, recent: cap - sinks + 1)
        }
        try cut(context, state: state)
    }

    /// Cuts streaming heads back after each decode step.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        try cut(context, state: state)
    }

    /// Keeps each streaming head's sinks and its `recent - 1` newest entries.
    private func cut(_ context: KVLayerContext, state: State) throws(KVError) {
        guard let retrieval = state.retrieval else { return }
        let (sinks, recent) = (state.window.sinks, state.window.recent)
        for (m, keep) in retrieval[context.layer].enumerated() where !keep {
            let n = context.count(head: m)
            if n > sinks + recent - 1 {
                try context.cache.remove(layer: context.layer, head: m, rows: sinks..<(n - (recent - 1)))
            }
        }
    }

    /// `"DuoAttention"`.
    public var name: String { "DuoAttention" }
}
