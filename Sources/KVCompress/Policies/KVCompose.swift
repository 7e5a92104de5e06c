/// KVCompose: attention-guided eviction with layer budgets from composite scores. After the first
/// prompt the host replays the prompt's tokens through the model on top of its cache (one
/// ``KVReplay``); each query head scores every prompt entry by the largest attention a replay query
/// gives it (``taskAggregation``), the heads of a group are averaged (``groupAggregation``) and, by
/// default, each KV head's scores get the layer's mean over KV heads added. Each layer's
/// *composite* curve is the ``headAggregation`` of its heads' scores sorted in descending order
/// (layer 0 takes the element-wise maximum over all layers); the top `n` values of all composite
/// curves together decide how many entries each layer keeps (at least one), and each head keeps its
/// own top entries.
///
/// ``structured`` (the default) keeps the same count in every head of a layer, so a layer stays
/// rectangular; unstructured gives each head its own count from its own sorted curve (kvpress masks
/// those; here they are evicted). Budget: `.compressionRatio(r)` keeps kvpress's
/// `max(1, Int(layers * L * (1 - r)))` composite entries (times `kvHeads` unstructured); a
/// `.tokens` or `.bytes` budget its per-head capacity times `layers` (times `kvHeads`). Only the
/// first prompt of a sequence is compressed; entries appended later stay. The replay runs the prompt
/// through the model once more, over twice its length, and observes its attention (about five to six
/// prefills' time on a CPU); the cache holds twice the prompt while it runs.
///
/// Paper: Akulov et al., "KVCompose: Efficient Structured KV Cache Compression with Composite Tokens"
/// (arXiv 2509.05165); reference code NVIDIA/kvpress `kvcompose_press.py`.
public struct KVCompose: KVCachePolicy {
    /// How scores over queries or heads are combined.
    public enum Aggregation: String, Sendable, CaseIterable {
        /// The largest value.
        case max
        /// The mean.
        case mean
    }

    /// How many entries stay.
    public let budget: KVBudget
    /// Same count in every head of a layer (default true).
    public let structured: Bool
    /// Over replay queries (kvpress `agg_task`, default max).
    public let taskAggregation: Aggregation
    /// Over the query heads of a group (kvpress `agg_group`, default mean).
    public let groupAggregation: Aggregation
    /// Over a layer's heads' sorted scores, into its composite curve (kvpress `agg_head`, default mean).
    public let headAggregation: Aggregation
    /// Multiply each entry's score by its value's L2 norm (default false).
    public let valueNorm: Bool
    /// Add the layer's mean over KV heads to every head's scores (default true).
    public let meanAcrossHeads: Bool
    /// Entries every layer (unstructured: every head) keeps at least (default 0; one is always kept).
    public let minimumKept: Int

    /// Per-sequence state.
    public struct State: Sendable {
        /// `task[layer][queryHead][j]`: the replay queries' max (or sum) of attention on prompt entry `j`.
        var task: [[[Float]]] = []
        /// Replay queries seen per layer.
        var queries: [Int] = []
        /// Length of the prompt being compressed (0: none).
        var promptLength = 0
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget or a negative `minimumKept`.
    public init(budget: KVBudget, structured: Bool = true, taskAggregation: Aggregation = .max,
                groupAggregation: Aggregation = .mean, headAggregation: Aggregation = .mean, valueNorm: Bool = false,
                meanAcrossHeads: Bool = true, minimumKept: Int = 0) throws(KVError) {
        self.budget = try budget.validated()
        guard minimumKept >= 0 else { throw .invalidParameter(name: "minimumKept", value: "\(minimumKept)", expected: ">= 0") }
        self.structured = structured
        self.taskAggregation = taskAggregation
        self.groupAggregation = groupAggregation
        self.headAggregation = headAggregation
        self.valueNorm = valueNorm
        self.meanAcrossHeads = meanAcrossHeads
        self.minimumKept = minimumKept
    }

    /// Fresh state: nothing scored.
    public func makeState(shape: KVModelShape) -> State { State() }

    /// Nothing during a prompt: the replay after it scores.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {}

    /// The first prompt once more, when every head still holds all of it.
    public func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout State) -> [KVReplay] {
        state = State()
        guard prompt.lowerBound == 0, cache.totalEntries == cache.layers * cache.kvHeads * prompt.count else { return [] }
        state.promptLength = prompt.count
        state.task = Array(repeating: [], count: cache.layers)
        state.queries = Array(repeating: 0, count: cache.layers)
        return [KVReplay([.prompt(0..<prompt.count)])]
    }

    /// Folds the replay chunk's attention on the prompt's entries into each query head's scores.
    public func afterReplay(_ context: KVLayerContext, replay: Int, state: inout State) throws(KVError) {
        let l = context.layer, length = state.promptLength, heads = context.shape.heads
        guard length > 0 else { return }
        if state.task[l].isEmpty {
            state.task[l] = Array(repeating: Array(repeating: taskAggregation == .max ? -.infinity : 0, count: length), count: heads)
        }
        context.forEachAttentionRow { h, _, row in
            state.task[l][h].withUnsafeMutableBufferPointer { task in
                switch taskAggregation {
                case .max: for j in 0..<length { task[j] = Swift.max(task[j], row[j]) }
                case .mean: for j in 0..<length { task[j] += row[j] }
                }
            }
        }
        state.queries[l] += context.tokenCount
    }

    /// Allocates the layers' (or heads') counts from the composite curves and evicts.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout State, pool: ThreadPool?) throws(KVError) {
        let length = state.promptLength
        guard length > 0, !state.task.contains(where: \.isEmpty) else { return }
        defer { state = State() }
        let scores = headScores(state, cache: cache, shape: shape)
        let counts = keptCounts(scores, cache: cache, shape: shape, length: length)
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                let top = Self.ranked(scores[l][m]).prefix(counts[l][m]).sorted()
                try cache.retain(layer: l, head: m, indices: top + Array(length..<cache.count(layer: l, head: m)))
            }
        }
    }

    /// `scores[layer][kvHead][j]`: the group aggregation of the task scores, with the value norms and
    /// the mean over KV heads when asked for.
    func headScores(_ state: State, cache: KVCache, shape: KVModelShape) -> [[[Float]]] {
        let length = state.promptLength, g = shape.heads / shape.kvHeads
        return (0..<shape.layers).map { l in
            let n = Float(state.queries[l])
            var layer = (0..<shape.kvHeads).map { m in
                (0..<length).map { j in
                    let group = (0..<g).map { state.task[l][m * g + $0][j] / (taskAggregation == .mean ? n : 1) }
                    var s = Self.aggregate(group, groupAggregation)
                    if valueNorm {
                        s *= cache.value(layer: l, head: m, row: j).reduce(0) { $0 + $1 * $1 }.squareRoot()
                    }
                    return s
                }
            }
            if meanAcrossHeads {
                let mean = (0..<length).map { j in layer.reduce(0) { $0 + $1[j] } / Float(shape.kvHeads) }
                for m in layer.indices { for j in 0..<length { layer[m][j] += mean[j] } }
            }
            return layer
        }
    }

    /// Entries each (layer, head) keeps: the top values of every composite curve together.
    func keptCounts(_ scores: [[[Float]]], cache: KVCache, shape: KVModelShape, length: Int) -> [[Int]] {
        let boost: Float = 1e9
        func sortedDescending(_ s: [Float]) -> [Float] {
            var sorted = s.sorted(by: >)
            for j in 0..<min(minimumKept, length) { sorted[j] += boost }
            return sorted
        }
        let units = structured ? 1 : shape.kvHeads
        var curves: [[Float]]
        if structured {
            curves = scores.map { layer in
                let sorted = layer.map { $0.sorted(by: >) }
                var curve = (0..<length).map { j in Self.aggregate(sorted.map { $0[j] }, headAggregation) }
                for j in 0..<min(minimumKept, length) { curve[j] += boost }
                return curve
            }
            curves[0] = (0..<length).map { j in curves.map { $0[j] }.max()! }
        } else {
            curves = scores.flatMap { $0.map(sortedDescending) }
        }
        let total = curves.count * length
        let kept: Int
        if let capacity = budget.fixedCapacity(cache: cache) {
            kept = min(total, capacity * shape.layers * units)
        } else if case .compressionRatio(let r) = budget {
            kept = KVBudget.keptCount(length: total, compressionRatio: r)
        } else {
            kept = total
        }
        var order = Array(0..<total)
        let flat = curves.flatMap { $0 }
        order.sort { flat[$0] > flat[$1] || (flat[$0] == flat[$1] && $0 < $1) }
        var perCurve = Array(repeating: 0, count: curves.count)
        for i in order.prefix(kept) { perCurve[i / length] += 1 }
        let floor = Swift.max(1, minimumKept)
        return (0..<shape.layers).map { l in
            (0..<shape.kvHeads).map { m in Swift.min(length, Swift.max(floor, perCurve[structured ? l : l * shape.kvHeads + m])) }
        }
    }

    /// Indices by descending score (ties: lower index first).
    static func ranked(_ s: [Float]) -> [Int] {
        s.indices.sorted { s[$0] > s[$1] || (s[$0] == s[$1] && $0 < $1) }
    }

    static func aggregate(_ values: [Float], _ how: Aggregation) -> Float {
        switch how {
        case .max: return values.max() ?? 0
        case .mean: return values.reduce(0, +) / Float(Swift.max(values.count, 1))
        }
    }
}
