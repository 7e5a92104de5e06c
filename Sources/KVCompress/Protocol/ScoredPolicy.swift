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
    /// What happens to the entries that are not kept.
    public let representation: KVRepresentation

    /// Combines a scorer and a selector (and, optionally, what becomes of dropped entries).
    public init(scorer: Scorer, selector: Selector, schedule: KVSchedule = .prefill, representation: KVRepresentation = .evict) {
        self.scorer = scorer
        self.selector = selector
        self.schedule = schedule
        self.representation = representation
    }

    /// `"ScoredPolicy(<scorer>, <selector>)"`.
    public var name: String { "ScoredPolicy(\(Scorer.self), \(Selector.self))" }
}
