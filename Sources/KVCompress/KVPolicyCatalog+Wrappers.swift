extension KVPolicyCatalog {
    /// A scorer a wrapper can take, by name.
    public struct ScorerEntry: Sendable {
        /// The library's name (the policy of the same name ranks by this scorer).
        public let name: String
        /// The kvpress class name of the press that scores this way, if any.
        public let kvpressName: String?
        /// Builds the scorer with its defaults from the model's trained artifacts (read by the scorers
        /// that need one, such as KVzap's surrogate).
        public let build: @Sendable (KVHeadPatterns) throws(KVError) -> any KVScorer

        /// Creates an entry whose scorer needs no trained artifact.
        public init(name: String, kvpressName: String?, make: @escaping @Sendable () throws(KVError) -> any KVScorer) {
            self.init(name: name, kvpressName: kvpressName) { _ throws(KVError) in try make() }
        }

        /// Creates an entry whose scorer reads the model's artifacts.
        public init(name: String, kvpressName: String?, build: @escaping @Sendable (KVHeadPatterns) throws(KVError) -> any KVScorer) {
            self.name = name
            self.kvpressName = kvpressName
            self.build = build
        }

        /// Builds the scorer (see ``build``).
        public func make(patterns: KVHeadPatterns = KVHeadPatterns()) throws(KVError) -> any KVScorer { try build(patterns) }
    }

    /// A policy that takes any scorer (`WRAPPER:INNER` names).
    public struct WrapperEntry: Sendable {
        /// The library's name.
        public let name: String
        /// The kvpress class name (nil for the library's own wrappers).
        public let kvpressName: String?
        /// One line on what it does.
        public let summary: String
        /// The name of the one number the wrapper takes as `WRAPPER@VALUE:INNER` (DMS's `threshold`),
        /// or nil when it takes none.
        public let parameter: String?
        /// Whether the policy holds the budget it is given (see ``Entry/holdsBudget``).
        public let holdsBudget: Bool
        /// Builds the policy around a scorer (with the `@VALUE` number when ``parameter`` is not nil,
        /// and the model's artifacts, which LU-KV's curve comes from).
        public let build: @Sendable (any KVScorer, KVBudget, KVSchedule, Double?, KVHeadPatterns) throws(KVError) -> any KVCachePolicy

        /// Creates an entry for a wrapper that holds its budget and takes no number.
        public init(name: String, kvpressName: String?, summary: String,
                    make: @escaping @Sendable (any KVScorer, KVBudget, KVSchedule) throws(KVError) -> any KVCachePolicy) {
            self.init(name: name, kvpressName: kvpressName, summary: summary, parameter: nil) {
                scorer, budget, schedule, _, _ throws(KVError) in try make(scorer, budget, schedule)
            }
        }

        /// Creates an entry in the general form: a wrapper that may take a number (`parameter`, then
        /// required in its names as `WRAPPER@VALUE:INNER`), may hold no budget, and may read the
        /// model's artifacts.
        public init(name: String, kvpressName: String?, summary: String, parameter: String?, holdsBudget: Bool = true,
                    build: @escaping @Sendable (any KVScorer, KVBudget, KVSchedule, Double?, KVHeadPatterns) throws(KVError)
                        -> any KVCachePolicy) {
            self.name = name
            self.kvpressName = kvpressName
            self.summary = summary
            self.parameter = parameter
            self.holdsBudget = holdsBudget
            self.build = build
        }
    }

    /// The scorers wrappers accept, with their defaults (kvpress's).
    public static let scorers: [ScorerEntry] = [
        ScorerEntry(name: "SnapKV", kvpressName: "SnapKVPress") { () throws(KVError) in try SnapKVScorer() },
        ScorerEntry(name: "TOVA", kvpressName: "TOVAPress") { () throws(KVError) in TOVAScorer() },
        ScorerEntry(name: "Knorm", kvpressName: "KnormPress") { () throws(KVError) in KnormScorer() },
        ScorerEntry(name: "ExpectedAttention", kvpressName: "ExpectedAttentionPress") { () throws(KVError) in
            try ExpectedAttentionScorer() },
        ScorerEntry(name: "ExpectedAttentionStats", kvpressName: "ExpectedAttentionStatsPress") { (patterns: KVHeadPatterns) throws(KVError) in
            try ExpectedAttentionScorer(statistics: try patterns.requireExpectedAttention()) },
        ScorerEntry(name: "ObservedAttention", kvpressName: "ObservedAttentionPress") { () throws(KVError) in
            try ObservedAttentionScorer() },
        ScorerEntry(name: "KeyDiff", kvpressName: "KeyDiffPress") { () throws(KVError) in KeyDiffScorer() },
        ScorerEntry(name: "CUR", kvpressName: "CURPress") { () throws(KVError) in try CURScorer() },
        ScorerEntry(name: "NonCausalAttention", kvpressName: "NonCausalAttnPress") { () throws(KVError) in
            try NonCausalAttentionScorer() },
        ScorerEntry(name: "LagKV", kvpressName: "LagKVPress") { () throws(KVError) in try LagKVScorer() },
        ScorerEntry(name: "Random", kvpressName: "RandomPress") { () throws(KVError) in RandomScorer() },
        ScorerEntry(name: "Cap", kvpressName: "CapPress") { () throws(KVError) in try CapScorer() },
        ScorerEntry(name: "LeverageScore", kvpressName: "LeverageScorePress") { () throws(KVError) in try LeverageScoreScorer() },
        ScorerEntry(name: "Compactor", kvpressName: "CompactorPress") { () throws(KVError) in try CompactorScorer() },
        ScorerEntry(name: "KVzap", kvpressName: "KVzapPress") { (patterns: KVHeadPatterns) throws(KVError) in
            KVzapScorer(surrogate: try patterns.requireKVzap()) },
    ]

    /// The policies that take any scorer: `AdaKV:ExpectedAttention`, `ChunkKVPress:TOVA`, ...
    public static let wrappers: [WrapperEntry] = [
        WrapperEntry(name: "AdaKV", kvpressName: "AdaKVPress", summary: "head-adaptive budgets over the inner scorer") {
            scorer, budget, schedule throws(KVError) in try adaKV(scorer, budget, schedule) },
        WrapperEntry(name: "ChunkKV", kvpressName: "ChunkKVPress", summary: "whole 20-token chunks by the inner scorer") {
            scorer, budget, schedule throws(KVError) in try chunkKV(scorer, budget, schedule) },
        WrapperEntry(name: "EntropyGatedChunkKV", kvpressName: "EntropyGatedChunkKVPress",
                     summary: "10-token chunks by the inner scorer, spiky chunks cut to their best 4") {
            scorer, budget, schedule throws(KVError) in try entropyGatedChunkKV(scorer, budget, schedule) },
        WrapperEntry(name: "CriticalKV", kvpressName: "CriticalKVPress",
                     summary: "half of each head's budget by the inner scorer, half rescaled by the values' output norms") {
            scorer, budget, schedule throws(KVError) in try criticalKV(scorer, budget, schedule, adaptive: false) },
        WrapperEntry(name: "CriticalAdaKV", kvpressName: "CriticalAdaKVPress",
                     summary: "AdaKV budgets over the inner scorer, filled as CriticalKV") {
            scorer, budget, schedule throws(KVError) in try criticalKV(scorer, budget, schedule, adaptive: true) },
        WrapperEntry(name: "Merging", kvpressName: "MergingPress",
                     summary: "the inner scorer's top entries, dropped values merged into the most similar kept ones") {
            scorer, budget, schedule throws(KVError) in try merging(scorer, budget, schedule) },
        WrapperEntry(name: "Chunk", kvpressName: "ChunkPress",
                     summary: "the inner scorer inside each 1024-entry span, the same fraction kept in each") {
            scorer, budget, schedule throws(KVError) in try chunk(scorer, budget, schedule) },
        WrapperEntry(name: "Block", kvpressName: "BlockPress",
                     summary: "block-wise prompt compression: keep n, add 128, re-score the union with the inner scorer") {
            scorer, budget, _ throws(KVError) in try block(scorer, budget) },
        WrapperEntry(name: "Decoding", kvpressName: "DecodingPress",
                     summary: "the prompt untouched; every 512 generated tokens each head cut to the budget by the inner scorer") {
            scorer, budget, _ throws(KVError) in try decoding(scorer, budget) },
        WrapperEntry(name: "CompressionRatioDecoding", kvpressName: "CompressionRatioDecodingPress",
                     summary: "Decoding with the target a ratio of the tokens seen so far (use a ratio budget)") {
            scorer, budget, _ throws(KVError) in try decoding(scorer, budget) },
        WrapperEntry(name: "CAM", kvpressName: "CAMPress",
                     summary: "Decoding whose best evicted entries first merge their values into the next 32 kept ones") {
            scorer, budget, _ throws(KVError) in try cam(scorer, budget) },
        WrapperEntry(name: "KeyRerotation", kvpressName: "KeyRerotationPress",
                     summary: "the inner scorer's top entries, keys moved to positions 0..<n") {
            scorer, budget, schedule throws(KVError) in try keyRerotation(scorer, budget, schedule) },
        WrapperEntry(name: "DMS", kvpressName: "DMSPress",
                     summary: "entries whose inner score is below the threshold evicted once 128 newer ones follow; "
                        + "no budget (DMS@THRESHOLD:INNER)", parameter: "threshold", holdsBudget: false) {
            scorer, _, schedule, threshold, _ throws(KVError) in try dms(scorer, Float(threshold ?? 0), schedule) },
        WrapperEntry(name: "LUKV", kvpressName: "LUKVPress",
                     summary: "per-head shares from the model's LU-KV budget curve (--lukv-curve), filled by the inner scorer",
                     parameter: nil) {
            scorer, budget, schedule, _, patterns throws(KVError) in try lukv(scorer, budget, schedule, patterns) },
        WrapperEntry(name: "MixedPrecision", kvpressName: nil,
                     summary: "zipcache only: the inner scorer's top entries of each head at 4 bits, the rest at 2, none evicted") {
            scorer, budget, _ throws(KVError) in try mixedPrecision(scorer, try UniformSelector(budget: budget)) },
        WrapperEntry(name: "AdaMixedPrecision", kvpressName: nil,
                     summary: "zipcache only: AdaKV's head shares of the inner scorer's top entries at 4 bits, the rest at 2") {
            scorer, budget, _ throws(KVError) in try mixedPrecision(scorer, try AdaptiveHeadSelector(budget: budget)) },
    ]

    private static func mixedPrecision<S: KVScorer, Selector: KVSelector>(_ s: S, _ selector: Selector) throws(KVError)
        -> any KVCachePolicy {
        ScoredPolicy(scorer: s, selector: selector, representation: .lowPrecision)
    }

    private static func entropyGatedChunkKV<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule) throws(KVError)
        -> any KVCachePolicy {
        try EntropyGatedChunkKV(scorer: s, budget: b, schedule: schedule)
    }

    private static func keyRerotation<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule) throws(KVError) -> any KVCachePolicy {
        KeyRerotation(base: ScoredPolicy(scorer: s, selector: try UniformSelector(budget: b), schedule: schedule))
    }

    /// CriticalKV or CriticalAdaKV around `s`; an ExpectedAttention scorer loses its value-norm factor,
    /// as kvpress advises (the second stage multiplies by the values' output norms already).
    private static func criticalKV<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule, adaptive: Bool) throws(KVError)
        -> any KVCachePolicy {
        if let e = s as? ExpectedAttentionScorer, e.useValueNorm {
            let plain = try ExpectedAttentionScorer(futurePositions: e.futurePositions, sinks: e.sinks, useCovariance: e.useCovariance,
                                                    useValueNorm: false, epsilon: e.epsilon, statistics: e.statistics)
            return try criticalKV(plain, b, schedule, adaptive: adaptive)
        }
        return adaptive ? try CriticalAdaKV(scorer: s, budget: b, schedule: schedule) : try CriticalKV(scorer: s, budget: b, schedule: schedule)
    }

    private static func chunk<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule) throws(KVError) -> any KVCachePolicy {
        try Chunk(scorer: s, budget: b, schedule: schedule)
    }

    private static func block<S: KVScorer>(_ s: S, _ b: KVBudget) throws(KVError) -> any KVCachePolicy {
        try Block(scorer: s, budget: b)
    }

    /// LU-KV around `s` (the budget must be a compression ratio: the curve is indexed by it).
    static func lukv<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule, _ patterns: KVHeadPatterns) throws(KVError)
        -> any KVCachePolicy {
        let curve = try patterns.requireLUKV()
        guard case .compressionRatio(let r) = b else {
            throw .invalidParameter(name: "budget", value: "\(b)", expected: "a compression ratio: LU-KV's curve is indexed by it")
        }
        return ScoredPolicy(scorer: s, selector: try LUKVSelector(curve: curve, compressionRatio: r), schedule: schedule)
    }

    private static func dms<S: KVScorer>(_ s: S, _ threshold: Float, _ schedule: KVSchedule) throws(KVError) -> any KVCachePolicy {
        try DMS(scorer: s, threshold: threshold, decoding: schedule == .prefillAndDecode)
    }

    private static func decoding<S: KVScorer>(_ s: S, _ b: KVBudget) throws(KVError) -> any KVCachePolicy {
        try Decoding(scorer: s, budget: b)
    }

    private static func cam<S: KVScorer>(_ s: S, _ b: KVBudget) throws(KVError) -> any KVCachePolicy {
        try CAM(scorer: s, budget: b)
    }

    private static func merging<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule) throws(KVError) -> any KVCachePolicy {
        try Merging(scorer: s, budget: b, schedule: schedule)
    }

    private static func adaKV<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule) throws(KVError) -> any KVCachePolicy {
        try AdaKV(scorer: s, budget: b, schedule: schedule)
    }

    private static func chunkKV<S: KVScorer>(_ s: S, _ b: KVBudget, _ schedule: KVSchedule) throws(KVError) -> any KVCachePolicy {
        try ChunkKV(scorer: s, budget: b, schedule: schedule)
    }

    /// The entry for `WRAPPER:INNER` (library or kvpress names on either side, any case), e.g.
    /// `AdaKV:ExpectedAttention` or `ChunkKVPress:TOVAPress`, and `WRAPPER@VALUE:INNER` for a wrapper
    /// that takes a number (`DMS@-4:KVzap`); nil when `name` has no colon.
    /// - Throws: `KVError.invalidParameter` for an unknown wrapper or scorer (listing the known ones),
    ///   or a number missing, unreadable or given to a wrapper that takes none.
    static func wrappedEntry(named name: String) throws(KVError) -> Entry? {
        let parts = name.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map { $0.lowercased() }
        guard parts.count == 2 else { return nil }
        let head = parts[0].split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let wrapper = wrappers.first(where: { $0.name.lowercased() == head[0] || $0.kvpressName?.lowercased() == head[0] }) else {
            throw .invalidParameter(name: "policy", value: name,
                                    expected: "WRAPPER:INNER with WRAPPER one of " + wrappers.map(\.name).joined(separator: ", "))
        }
        guard let inner = scorers.first(where: { $0.name.lowercased() == parts[1] || $0.kvpressName?.lowercased() == parts[1] }) else {
            throw .invalidParameter(name: "policy", value: name,
                                    expected: "WRAPPER:INNER with INNER one of " + scorers.map(\.name).joined(separator: ", "))
        }
        var number: Double?
        if let parameter = wrapper.parameter {
            guard head.count == 2, let value = Double(head[1]), value.isFinite else {
                throw .invalidParameter(name: "policy", value: name,
                                        expected: "\(wrapper.name)@\(parameter.uppercased()):INNER, the \(parameter) a finite number "
                                            + "(e.g. \(wrapper.name)@-4:\(inner.name))")
            }
            number = value
        } else if head.count == 2 {
            throw .invalidParameter(name: "policy", value: name, expected: "\(wrapper.name):INNER (\(wrapper.name) takes no @number)")
        }
        let value = number
        let suffix = number.map { "@\($0.formatted)" } ?? ""
        return Entry(name: "\(wrapper.name)\(suffix):\(inner.name)",
                     kvpressName: wrapper.kvpressName.flatMap { w in inner.kvpressName.map { "\(w)(\($0))" } },
                     summary: "\(wrapper.summary) (\(inner.name))", holdsBudget: wrapper.holdsBudget) { budget, schedule, patterns throws(KVError) in
            try wrapper.build(try inner.make(patterns: patterns), budget, schedule, value, patterns)
        }
    }
}

private extension Double {
    /// The shortest decimal form (`-4`, `0.25`).
    var formatted: String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}
