/// Any scorer with any selector: the few-lines way to build a new combination.
///
/// ```swift
/// // TOVA scores with PyramidKV's layer budgets:
/// let policy = ScoredPolicy(scorer: TOVAScorer(),
///                           selector: try PyramidSelector(budget: .compressionRatio(0.7)))
/// ```
public struct ScoredPolicy<Scorer: KVScorer, Selector: KVSelector>: KVScoredPolicy {
    /// The scorer.
    public let scorer: Scorer
    /// The selector.
    public let selector: Selector
    /// When to evict.
    public let schedule: KVSchedule

    /// Combines a scorer and a selector.
    public init(scorer: Scorer, selector: Selector, schedule: KVSchedule = .prefill) {
        self.scorer = scorer
        self.selector = selector
        self.schedule = schedule
    }

    /// `"ScoredPolicy(<scorer>, <selector>)"`.
    public var name: String { "ScoredPolicy(\(Scorer.self), \(Selector.self))" }
}
