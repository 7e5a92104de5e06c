/// PerLayerCompression: any scorer with its own compression ratio in every layer
/// (``PerLayerSelector``). Entries are really evicted.
///
/// Reference: NVIDIA/kvpress `per_layer_compression_press.py` (`PerLayerCompressionPress(press,
/// compression_ratios)`, which kvpress marks experimental and flash-attention only; here it runs
/// with any attention). With the fixture's SnapKV sets, a model whose layers alternate ratios 0.5
/// and 0.8 keeps in each layer exactly what kvpress's SnapKV keeps at that layer's ratio.
public struct PerLayerCompression<Scorer: KVScorer>: KVScoredPolicy {
    /// The base scorer.
    public let scorer: Scorer
    /// The per-layer ratios.
    public let selector: PerLayerSelector
    /// When to evict (decode-time cuts hold each head at what the prompt's compression kept).
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Parameter ratios: the fraction removed in each layer, one per layer of the model.
    /// - Throws: `KVError.invalidParameter` for an empty list or a ratio outside `[0, 1)`.
    public init(scorer: Scorer, ratios: [Double], schedule: KVSchedule = .prefill) throws(KVError) {
        self.scorer = scorer
        selector = try PerLayerSelector(ratios: ratios)
        self.schedule = schedule
    }

    /// The mean of the layers' ratios.
    public var meanCompressionRatio: Double { selector.ratios.reduce(0, +) / Double(selector.ratios.count) }

    /// `"PerLayerCompression(<scorer>)"`.
    public var name: String { "PerLayerCompression(\(Scorer.self))" }
}
