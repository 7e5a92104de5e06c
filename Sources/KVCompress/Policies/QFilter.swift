/// QFilter: keeps the entries whose keys project most on their head's dominant query direction
/// (``QFilterScorer`` over calibrated ``QFilters``), the same count in every head.
///
/// Paper: Godey et al., "Q-Filters: Leveraging QK Geometry for Efficient KV Cache Compression"
/// (arXiv 2503.02812). Reference: NVIDIA/kvpress `qfilter_press.py` (`QFilterPress`, which downloads
/// trained filters for a few models; here they are computed from the model's queries on a text by
/// `kvcompress calibrate qfilter`, and shipped for the default model).
public struct QFilter: KVScoredPolicy {
    /// The scorer.
    public let scorer: QFilterScorer
    /// The selector.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget.
    public init(filters: QFilters, budget: KVBudget, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = QFilterScorer(filters: filters)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// `"QFilter"`.
    public var name: String { "QFilter" }
}
