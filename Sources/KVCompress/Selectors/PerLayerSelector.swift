/// A compression ratio per layer (kvpress `PerLayerCompressionPress`): layer `l` keeps each head's
/// top `max(1, Int(L * (1 - ratios[l])))` entries, so layers that matter more can keep more.
public struct PerLayerSelector: KVSelector {
    /// The fraction removed in each layer.
    public let ratios: [Double]

    /// Creates the selector.
    /// - Throws: `KVError.invalidParameter` for an empty list or a ratio outside `[0, 1)`.
    public init(ratios: [Double]) throws(KVError) {
        guard !ratios.isEmpty else { throw .invalidParameter(name: "ratios", value: "[]", expected: "one compression ratio per layer") }
        for (l, r) in ratios.enumerated() where !(r.isFinite && r >= 0 && r < 1) {
            throw .invalidParameter(name: "ratios[\(l)]", value: "\(r)", expected: "a compression ratio in [0, 1)")
        }
        self.ratios = ratios
    }

    /// Per-head top-k with the layer's ratio.
    /// - Throws: `KVError.shapeMismatch` when the model has more layers than ratios.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        guard context.layer < ratios.count else {
            throw .shapeMismatch("\(ratios.count) per-layer ratios for a model of \(context.shape.layers) layers: give one per layer")
        }
        let r = ratios[context.layer]
        return try KVSelection.topK(scores, keep: context.counts.map { min($0, KVBudget.keptCount(length: $0, compressionRatio: r)) },
                                    context: context)
    }
}
