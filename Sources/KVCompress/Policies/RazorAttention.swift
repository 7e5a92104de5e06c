/// RazorAttention: retrieval heads (echo and induction heads, ``RazorHeads``) keep the whole
/// cache; every other head keeps its first `sinks` entries, a buffer of the most recent entries
/// and one *compensation token* that stands for everything dropped in between: the mean of the
/// dropped keys and values, counted once per dropped token (a merged entry,
/// ``KVCache/merge(layer:head:rows:)``: attention adds `ln |D|` to its logit, in the kernels, so
/// `o = (sum_kept e^s v + |D| e^s_hat v_hat) / (sum_kept e^s + |D| e^s_hat)`, the paper's eq. 5).
///
/// Buffer sizes:
/// - **The paper's** (`init(heads:sinks:minimumBuffer:compressionRatio:schedule:)`): a head with `N`
///   entries keeps a buffer of `max(S0, N / C)` (paper: `S0 = 4000`, `C = 5`, 4 sinks).
/// - **By a budget** (`init(heads:budget:sinks:schedule:)`, what equal-memory comparisons use): the
///   retrieval heads keep everything and the other heads share the rest of the budget's bytes
///   equally (sinks + compensation token + buffer, each entry with its 4-byte log-count); when the
///   retrieval heads alone leave less than 16 buffer entries per other head, the least important
///   retrieval heads (``RazorHeads/heads`` order) become ordinary heads.
///
/// The prompt is compressed after its last chunk (each layer right after its attention: the
/// attention of the prompt itself is exact, as with FlashAttention in the paper). With
/// ``KVSchedule/prefillAndDecode`` (the default) the buffer then rolls while decoding: entries
/// leaving it are folded into the compensation token (its mean and count updated exactly), so
/// ordinary heads stay bounded; with ``KVSchedule/prefill`` they grow again, as in golden-stick's
/// deployment. Keys are cached post-RoPE at original positions; the compensation token is a mean
/// of rotated keys at the position of the last token it absorbed (the paper's eq. 4).
///
/// Paper: Tang et al., "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads"
/// (ICLR 2025, arXiv 2407.15891), Algorithm 1. Reference: mindspore-ai/golden-stick
/// `razor_attention/` (head selection; its deployment keeps 256 slots and applies no `ln |D|`).
public struct RazorAttention: KVCachePolicy {
    /// How ordinary heads' buffers are sized.
    public enum Sizing: Sendable, Equatable {
        /// `max(minimumBuffer, N / compressionRatio)` per head of `N` entries.
        case paper(minimumBuffer: Int, compressionRatio: Double)
        /// Retrieval heads keep everything; ordinary heads share the rest of this budget.
        case budget(KVBudget)
    }

    /// The retrieval heads.
    public let heads: RazorHeads
    /// Attention sinks every ordinary head keeps (paper: 4).
    public let sinks: Int
    /// How buffers are sized.
    public let sizing: Sizing
    /// When entries are folded (after the first prompt only, or while decoding too).
    public let schedule: KVSchedule
    /// The fewest buffer entries a budget leaves an ordinary head before retrieval heads are given up.
    public static let minimumBudgetBuffer = 16

    /// Per-sequence state.
    public struct State: Sendable {
        /// `[layer][head]`: true for a retrieval head (nil until the first prompt ends).
        public internal(set) var retrieval: [[Bool]]?
        /// An ordinary head's buffer (recent entries kept besides the sinks and the compensation
        /// token), fixed when the first prompt ends.
        public internal(set) var buffer: Int
        /// `[layer]`: the first prompt was compressed.
        public internal(set) var compressed: [Bool]
    }

    /// Creates the policy with the paper's buffer sizes.
    /// - Throws: `KVError.invalidParameter` for negative sinks, a minimum buffer below 1 or a
    ///   compression ratio below 1.
    public init(heads: RazorHeads, sinks: Int = 4, minimumBuffer: Int = 4000, compressionRatio: Double = 5,
                schedule: KVSchedule = .prefillAndDecode) throws(KVError) {
        guard minimumBuffer >= 1 else {
            throw .invalidParameter(name: "minimumBuffer", value: "\(minimumBuffer)", expected: ">= 1")
        }
        guard compressionRatio >= 1 else {
            throw .invalidParameter(name: "compressionRatio", value: "\(compressionRatio)", expected: ">= 1 (C in N / C)")
        }
        try self.init(heads: heads, sinks: sinks, sizing: .paper(minimumBuffer: minimumBuffer, compressionRatio: compressionRatio),
                      schedule: schedule)
    }

    /// Creates the policy with a budget for the whole cache.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or negative sinks.
    public init(heads: RazorHeads, budget: KVBudget, sinks: Int = 4, schedule: KVSchedule = .prefillAndDecode) throws(KVError) {
        try self.init(heads: heads, sinks: sinks, sizing: .budget(try budget.validated()), schedule: schedule)
    }

    private init(heads: RazorHeads, sinks: Int, sizing: Sizing, schedule: KVSchedule) throws(KVError) {
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        self.heads = heads
        self.sinks = sinks
        self.sizing = sizing
        self.schedule = schedule
    }

    /// Nothing decided yet.
    public func makeState(shape: KVModelShape) -> State {
        State(retrieval: nil, buffer: 0, compressed: Array(repeating: false, count: shape.layers))
    }

    /// After the first prompt's last chunk: chooses the split (on layer 0) and compresses the layer.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if l == 0 && context.isFirstChunk {
            try heads.check(context.shape)
            state = makeState(shape: context.shape)
        }
        guard context.isLastChunk else { return }
        // Layer 0 ends the first prompt first: it decides for every layer.
        if state.retrieval == nil { try decide(context, state: &state) }
        guard !state.compressed[l] || schedule == .prefillAndDecode else { return }
        try fold(context, state: state)
        state.compressed[l] = true
    }

    /// With ``KVSchedule/prefillAndDecode``: folds the entries leaving each buffer.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        guard schedule == .prefillAndDecode, state.retrieval != nil else { return }
        try fold(context, state: state)
    }

    private func decide(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let shape = context.shape
        var ranked = heads.heads
        switch sizing {
        case .paper(let s0, let c):
            let n = context.counts.max() ?? 0
            state.buffer = max(s0, Int(Double(n) / c))
        case .budget(let budget):
            let cache = context.cache
            let split = KVRetrievalSplit(budget: budget, length: context.counts.max() ?? 0, cache: cache,
                                         rankedHeads: ranked.count, streamingMinimum: sinks + 1 + Self.minimumBudgetBuffer,
                                         streamingEntryBytes: cache.bytesPerEntry + MemoryLayout<Float>.size,
                                         fillStreaming: true)
            ranked = Array(ranked.prefix(split.retrievalCount))
            state.buffer = max(1, split.streamingEntries - sinks - 1)
        }
        var retrieval = Array(repeating: Array(repeating: false, count: shape.kvHeads), count: shape.layers)
        for h in ranked { retrieval[h.layer][h.head] = true }
        state.retrieval = retrieval
    }

    /// Folds every ordinary head's entries between its sinks and its buffer into one compensation
    /// token (merging with the one already there).
    private func fold(_ context: KVLayerContext, state: State) throws(KVError) {
        guard let retrieval = state.retrieval else { return }
        let l = context.layer
        for m in 0..<context.shape.kvHeads where !retrieval[l][m] {
            let n = context.count(head: m)
            let kept = n - state.buffer
            // Rows sinks ..< kept go into one entry (the compensation token, if any, is row `sinks`).
            if kept - sinks >= 2 { try context.cache.merge(layer: l, head: m, rows: sinks..<kept) }
        }
    }

    /// `"RazorAttention"`.
    public var name: String { "RazorAttention" }
}
