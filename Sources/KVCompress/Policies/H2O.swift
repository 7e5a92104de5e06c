/// H2O (heavy-hitter oracle): keeps the most recent entries plus the "heavy hitters", the entries
/// with the largest attention accumulated over every query so far (prompt and generated tokens,
/// unnormalized sum, group mean for GQA), and keeps doing so at every decode step.
///
/// Each head keeps `n` entries (the budget's count at the end of the prompt, then the budget's fixed
/// capacity, or for a ratio `max(n, KVBudget.minimumRollingCapacity)`, while decoding): the last `Int(n * recentFraction)` rows, and the best of
/// the others by accumulated attention (ties: larger position first).
///
/// Paper: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
/// Language Models", NeurIPS 2023 (arXiv 2306.14048). Reference: FMInference/H2O
/// `h2o_hf/utils_real_drop/modify_llama.py`.
public struct H2O: KVCachePolicy {
    /// Entries kept per head.
    public let budget: KVBudget
    /// Fraction of the kept entries reserved for the most recent tokens, in `[0, 1]`.
    public let recentFraction: Double
    /// Queries probed at once when accumulating attention (when the host provides no column sums).
    public let blockSize: Int

    /// `true`: the attention of prompt and generated tokens is accumulated from the host's column
    /// sums when it provides them.
    public var needsAttentionColumnSums: Bool { true }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, `recentFraction` outside `[0, 1]`
    ///   or `blockSize < 1`.
    public init(budget: KVBudget, recentFraction: Double = 0.5, blockSize: Int = 64) throws(KVError) {
        self.budget = try budget.validated()
        guard recentFraction >= 0, recentFraction <= 1 else {
            throw .invalidParameter(name: "recentFraction", value: "\(recentFraction)", expected: "a fraction in [0, 1]")
        }
        guard blockSize >= 1 else { throw .invalidParameter(name: "blockSize", value: "\(blockSize)", expected: ">= 1") }
        self.recentFraction = recentFraction
        self.blockSize = blockSize
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double, recentFraction: Double = 0.5) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), recentFraction: recentFraction)
    }

    /// H2O's per-sequence state.
    public struct State: Sendable {
        /// Accumulated attention.
        public var attention: KVAccumulatedAttention
        /// Decode capacity per layer and head.
        public var capacity: [[Int?]]
    }

    /// Empty accumulators.
    public func makeState(shape: KVModelShape) -> State {
        State(attention: KVAccumulatedAttention(shape: shape),
              capacity: Array(repeating: Array(repeating: nil, count: shape.kvHeads), count: shape.layers))
    }

    /// Accumulates; compresses after the last chunk.
    /// A later prompt (after the first one was compressed) is cut back to each head's capacity.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk {
            state.attention.reset(layer: l)
            for m in state.capacity[l].indices { state.capacity[l][m] = nil }
        }
        state.attention.accumulate(context, blockSize: blockSize)
        guard context.isLastChunk else { return }
        for m in 0..<context.shape.kvHeads {
            let keep = state.capacity[l][m]
                ?? budget.keptCount(length: context.count(head: m), cache: context.cache)
            try evict(context, head: m, keep: keep, state: state)
            state.capacity[l][m] = state.capacity[l][m] ?? budget.rollingCapacity(kept: keep, cache: context.cache)
        }
    }

    /// Accumulates; cuts heads over capacity.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        state.attention.accumulate(context, blockSize: blockSize)
        let fixed = budget.fixedCapacity(cache: context.cache)
        for m in 0..<context.shape.kvHeads {
            if let cap = state.capacity[context.layer][m] ?? fixed { try evict(context, head: m, keep: cap, state: state) }
        }
    }

    func evict(_ context: KVLayerContext, head m: Int, keep: Int, state: State) throws(KVError) {
        let positions = context.positions(head: m)
        let n = positions.count
        guard keep < n else { return }
        let recent = min(keep, Int(Double(keep) * recentFraction))
        let older = n - recent
        let scores = positions[0..<older].map { state.attention.value(layer: context.layer, head: m, position: Int($0)) }
        // topK drops the few worst rows by a linear scan while decoding (one row per step).
        let heavy = try KVSelection.topK(scores: scores, positions: Array(positions[0..<older]), k: keep - recent)
            ?? Array(0..<older)
        try context.cache.retain(layer: context.layer, head: m, indices: heavy + Array(older..<n))
    }

    /// `"H2O"`.
    public var name: String { "H2O" }
}
