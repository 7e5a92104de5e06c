/// LU-KV's allocation (kvpress `LUKVPress`): each KV head keeps the share of the prompt its
/// offline budget curve (``LUKVCurve``) gives it at the target ratio, filled with its best entries;
/// the first `sinks` and last `window` rows are always kept (scored above everything).
///
/// Head `m` of layer `l` ideally keeps `(1 - prune[l][m]) x L` rows (clamped to `[0, L]`); the
/// layer's total is rounded and the floors topped up by largest remainder, each head keeping
/// at least one row, as kvpress computes it.
public struct LUKVSelector: KVSelector {
    /// The model's budget curve.
    public let curve: LUKVCurve
    /// Target fraction of the layer's entries removed, in `[0, 1)`.
    public let compressionRatio: Double
    /// Rows at the start always kept (kvpress default 4).
    public let sinks: Int
    /// Rows at the end always kept (kvpress default 1).
    public let window: Int

    /// Creates the selector.
    /// - Throws: `KVError.invalidParameter` for a ratio outside `[0, 1)` or negative sinks/window.
    public init(curve: LUKVCurve, compressionRatio: Double, sinks: Int = 4, window: Int = 1) throws(KVError) {
        guard compressionRatio.isFinite, compressionRatio >= 0, compressionRatio < 1 else {
            throw .invalidParameter(name: "compressionRatio", value: "\(compressionRatio)", expected: "a fraction in [0, 1)")
        }
        guard sinks >= 0, window >= 0 else {
            throw .invalidParameter(name: "sinks/window", value: "\(sinks)/\(window)", expected: ">= 0 rows")
        }
        self.curve = curve
        self.compressionRatio = compressionRatio
        self.sinks = sinks
        self.window = window
    }

    /// Per-head counts from the curve, then per-head top-k with the protected rows first.
    /// - Throws: `KVError.shapeMismatch` when the curve does not fit the model or the heads hold
    ///   different counts.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        guard compressionRatio > 0 else { return Array(repeating: nil, count: scores.heads.count) }
        guard curve.layers == context.shape.layers, curve.kvHeads == context.shape.kvHeads else {
            throw .shapeMismatch("the LU-KV curve is for \(curve.layers) layers x \(curve.kvHeads) KV heads; the model has "
                + "\(context.shape.layers) x \(context.shape.kvHeads): use the curve made for this model")
        }
        let counts = context.counts
        guard let n = counts.first, counts.allSatisfy({ $0 == n }) else {
            throw .shapeMismatch("LU-KV needs every KV head of layer \(context.layer) to hold the same entries; they hold \(counts)")
        }
        // In f32, as kvpress computes it (the curve is cast to float32).
        let ideal = (0..<counts.count).map { m in
            Float(n) * min(1, max(0, 1 - Float(curve.pruneRatio(ratio: compressionRatio, layer: context.layer, head: m))))
        }
        let total = min(counts.count * n, max(counts.count, Int(ideal.reduce(0, +).rounded(.toNearestOrEven))))
        var keep = ideal.map { Int($0.rounded(.down)) }
        let remainder = total - keep.reduce(0, +)
        if remainder > 0 {
            let order = keep.indices.sorted { ideal[$0] - Float(keep[$0]) > ideal[$1] - Float(keep[$1]) }
            for m in order.prefix(remainder) { keep[m] += 1 }
        }
        keep = keep.map { min(n, max(1, $0)) }
        var protected = scores
        let top = (scores.maximum ?? 0) + 1
        for m in protected.heads.indices {
            for j in 0..<min(sinks, n) { protected.heads[m][j] = top }
            for j in max(0, n - window)..<n { protected.heads[m][j] = top }
        }
        return try KVSelection.topK(protected, keep: keep, context: context)
    }
}
