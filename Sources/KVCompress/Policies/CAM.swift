/// CAM (cache merging): compression while generating, as ``Decoding``, where the evicted entries the
/// generated tokens attended to most first merge their values into the kept entries that follow
/// them. Every ``interval`` generated tokens a layer over its target keeps the target's best entries
/// by the scorer's scores averaged over its KV heads (the same positions in every head); of the
/// evicted entries, the `k` best scored (`k` = steps since the last compression; ties: the later
/// entry) merge, each into the next ``mergeBudget`` kept entries: in KV head `m`, with probability
/// `clamp(A[e] / mean A[window], 0, 1)` (`A` the attention the generated tokens paid since the
/// prompt, group mean; drawn from a seeded generator), `v_e / |window|` is added to every value of
/// the window. Keys are unchanged, and the evicted entries are freed (values rewritten in place).
///
/// The target comes from the budget as in ``Decoding`` (kvpress default: 2048 entries every 512
/// steps). The prompt is left as it is; the accumulated attention restarts at every prompt chunk.
/// Every KV head of a layer must hold the same positions (as in kvpress's rectangular cache): a
/// typed error otherwise, e.g. after a prefill policy that evicts per head.
///
/// Paper: Zhang et al., "CaM: Cache Merging for Memory-efficient LLMs Inference", ICML 2024;
/// reference code NVIDIA/kvpress `cam_press.py` (`CAMPress`, batched merging every
/// `compression_interval` steps).
public struct CAM<Scorer: KVScorer>: KVCachePolicy {
    /// Scores entries when a compression is due (averaged over KV heads).
    public let scorer: Scorer
    /// The target after each compression.
    public let budget: KVBudget
    /// Generated tokens between compressions (kvpress default 512).
    public let interval: Int
    /// Kept entries each merged entry spreads its value over (kvpress default 32).
    public let mergeBudget: Int
    /// Seed of the merge draws.
    public let seed: UInt32

    /// Per-sequence state.
    public struct State {
        /// The scorer's state.
        public var scorer: Scorer.State
        /// Generated tokens per layer since its last compression (or prompt).
        public var steps: [Int]
        /// Attention the generated tokens paid, per layer, KV head and position.
        public var attention: KVAccumulatedAttention
        var random: MersenneTwister
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, `interval < 1` or `mergeBudget < 1`.
    public init(scorer: Scorer, budget: KVBudget = .tokens(2048), interval: Int = 512, mergeBudget: Int = 32,
                seed: UInt32 = 0) throws(KVError) {
        guard interval >= 1 else { throw .invalidParameter(name: "interval", value: "\(interval)", expected: ">= 1 generated tokens") }
        guard mergeBudget >= 1 else {
            throw .invalidParameter(name: "mergeBudget", value: "\(mergeBudget)", expected: ">= 1 kept entries")
        }
        self.scorer = scorer
        self.budget = try budget.validated()
        self.interval = interval
        self.mergeBudget = mergeBudget
        self.seed = seed
    }

    /// Fresh scorer state and accumulators.
    public func makeState(shape: KVModelShape) -> State {
        State(scorer: scorer.makeState(shape: shape), steps: Array(repeating: 0, count: shape.layers),
              attention: KVAccumulatedAttention(shape: shape), random: MersenneTwister(seed: seed))
    }

    /// The scorer observes the prompt; the layer's step count and accumulated attention restart.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        state.steps[context.layer] = 0
        state.attention.reset(layer: context.layer)
        try scorer.observe(context, state: &state.scorer)
    }

    /// Accumulates the step's attention; every ``interval`` steps merges and evicts down to the target.
    /// - Throws: `KVError.invalidState` when the layer's KV heads hold different positions; what the
    ///   scorer throws.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        try scorer.observe(context, state: &state.scorer)
        state.attention.accumulate(context, blockSize: 1)
        state.steps[l] += 1
        let target = budget.keptCount(length: context.totalLength, cache: context.cache)
        let positions = context.positions(head: 0)
        guard state.steps[l] >= interval, positions.count > target else { return }
        let kvHeads = context.shape.kvHeads
        guard (1..<kvHeads).allSatisfy({ context.positions(head: $0) == positions }) else {
            throw .invalidState("CAM merges along one sequence of positions, but layer \(l)'s KV heads hold different "
                + "positions: pair it with a prefill policy that keeps the same entries in every head, or none")
        }
        let scores = try scorer.scores(context, state: &state.scorer)
        try scores.check(against: context, scorer: String(describing: Scorer.self))
        let n = positions.count
        let mean = (0..<n).map { j in (0..<kvHeads).reduce(0) { $0 + scores.heads[$1][j] } / Float(kvHeads) }
        let plan = Self.plan(scores: mean, keep: target, merges: state.steps[l], mergeBudget: mergeBudget)
        for m in 0..<kvHeads {
            let accumulated = positions.map { state.attention.value(layer: l, head: m, position: Int($0)) }
            var values = (0..<n).map { context.cache.value(layer: l, head: m, row: $0) }
            for (e, window) in plan.merges where !window.isEmpty {
                let windowMean = window.reduce(0) { $0 + accumulated[$1] } / Float(window.count)
                var p = accumulated[e] / windowMean
                if p.isNaN { p = 0 } else if p.isInfinite { p = 1 }
                p = min(max(p, 0), 1)
                guard state.random.nextUnitFloat() < p else { continue }
                for t in window {
                    for i in values[t].indices { values[t][i] += values[e][i] / Float(window.count) }
                }
            }
            for t in Set(plan.merges.flatMap(\.window)).sorted() {
                try context.cache.setValues(layer: l, head: m, rows: t..<(t + 1), values: values[t])
            }
            try context.cache.retain(layer: l, head: m, indices: plan.kept)
        }
        state.steps[l] = 0
    }

    /// The kept rows (the `keep` best by `scores`, ascending) and each merging row with its window:
    /// the evicted rows' `merges` best (ties: the later row), each with the next `mergeBudget` kept
    /// rows after it. Lowest scores are evicted first (ties: the earlier row).
    static func plan(scores: [Float], keep: Int, merges: Int, mergeBudget: Int) -> (kept: [Int], merges: [(Int, window: [Int])]) {
        let order = scores.indices.sorted { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        let evicted = Array(order.prefix(scores.count - keep))
        let kept = order.dropFirst(scores.count - keep).sorted()
        let merging = evicted.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }.prefix(merges).sorted()
        return (kept, merging.map { e in
            let first = kept.firstIndex { $0 > e } ?? kept.count
            return (e, Array(kept[first..<min(kept.count, first + mergeBudget)]))
        })
    }

    /// Whether the scorer reads column sums; the accumulated attention uses them too.
    public var needsAttentionColumnSums: Bool { true }

    /// `"CAM(<scorer>)"`.
    public var name: String { "CAM(\(Scorer.self))" }
}
