/// PyramidKV's layer budgets: lower layers keep more, upper layers fewer, with the same mean as a
/// uniform budget (kvpress `PyramidKVPress.get_layer_budget`, float arithmetic, window included).
///
/// With `mean` = the uniform budget (`L * (1 - ratio)` for a ratio) and `w` the observation window:
/// ```
/// mcp = w + mean;  min = (mcp - w) / beta;  max = 2 (mcp - w) - min
/// if max >= L - w { max = L - w; min = 2 (mcp - w) - max }
/// if !(L >= max >= min >= w) { keep max(1, round(mean)) }          // uniform fallback (round, not int)
/// else { keep round(max - layer * (max - min) / (layers - 1)) }    // steps 0 with one layer
/// ```
/// `round` is Python's (half to even). Note the fallback fires whenever `mean < ~beta * w`.
public struct PyramidSelector: KVSelector {
    /// The mean budget.
    public let budget: KVBudget
    /// Observation window `w` (counted inside the budget).
    public let window: Int
    /// Pyramid steepness `beta` (>= 1).
    public let beta: Double

    /// Creates a pyramid selector.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, `window < 1` or `beta < 1`.
    public init(budget: KVBudget, window: Int = 64, beta: Double = 20) throws(KVError) {
        self.budget = try budget.validated()
        guard window >= 1 else { throw .invalidParameter(name: "window", value: "\(window)", expected: ">= 1") }
        guard beta >= 1, beta.isFinite else { throw .invalidParameter(name: "beta", value: "\(beta)", expected: ">= 1") }
        self.window = window
        self.beta = beta
    }

    /// Entries kept by `layer` of a `layers`-layer model for a head holding `length` entries.
    public func layerBudget(layer: Int, layers: Int, length: Int, cache: KVCache) -> Int {
        let L = Double(length)
        let mean: Double
        switch budget {
        case .compressionRatio(let r): mean = L * (1 - r)
        default: mean = Double(min(length, budget.fixedCapacity(cache: cache)!))
        }
        let w = Double(window)
        let mcp = w + mean
        var minNum = (mcp - w) / beta
        var maxNum = (mcp - w) * 2 - minNum
        if maxNum >= L - w {
            maxNum = L - w
            minNum = (mcp - w) * 2 - maxNum
        }
        let n: Int
        if !(L >= maxNum && maxNum >= minNum && minNum >= w) {
            n = max(1, Int(mean.rounded(.toNearestOrEven)))
        } else {
            let steps = layers > 1 ? (maxNum - minNum) / Double(layers - 1) : 0
            n = Int((maxNum - Double(layer) * steps).rounded(.toNearestOrEven))
        }
        return min(max(n, 1), length)
    }

    /// With a fixed budget (`.tokens`, `.bytes`), the layer's pyramid share of it, held while
    /// decoding and across later prompts (nil for a ratio: what the prompt kept).
    public func decodeCapacity(context: KVLayerContext) -> Int? {
        guard budget.fixedCapacity(cache: context.cache) != nil else { return nil }
        return layerBudget(layer: context.layer, layers: context.shape.layers, length: Int(Int32.max), cache: context.cache)
    }

    /// Per-head top-k with the layer's pyramid budget.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        let keep = context.counts.map {
            layerBudget(layer: context.layer, layers: context.shape.layers, length: $0, cache: context.cache)
        }
        return try KVSelection.topK(scores, keep: keep, context: context)
    }
}
