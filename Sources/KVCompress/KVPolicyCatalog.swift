/// Builds policies by name, for command-line tools and benchmarks.
///
/// Names are case-insensitive and accept both the library's names and kvpress's class names
/// (`SnapKVPress`, `StreamingLLMPress`, `KnormPress`, `TOVAPress`, `ExpectedAttentionPress`,
/// `ObservedAttentionPress`, `PyramidKVPress`, `KeyDiffPress`, `AdaKVPress` — the last meaning
/// AdaKV over SnapKV scores), and wrappers around any scorer as `WRAPPER:INNER`
/// (`AdaKV:ExpectedAttention`, `ChunkKVPress:TOVAPress`; see ``wrappers`` and ``scorers``).
public enum KVPolicyCatalog {
    /// One catalog entry.
    public struct Entry: Sendable {
        /// The library's name.
        public let name: String
        /// The kvpress class name with the same semantics, if any.
        public let kvpressName: String?
        /// One line on what it does.
        public let summary: String
        /// Builds the policy for a budget, a schedule (``KVSchedule/prefill``: compress the first
        /// prompt only, kvpress's way; ``KVSchedule/prefillAndDecode``: hold the capacity at every
        /// later step and prompt, which bounds the cache on a stream) and the model's head patterns
        /// (read by the retrieval-head policies only). Policies that always roll (StreamingLLM, H2O)
        /// and the full cache ignore the schedule.
        public let build: @Sendable (KVBudget, KVSchedule, KVHeadPatterns) throws(KVError) -> any KVCachePolicy
        /// Whether the policy holds the budget it is given (false for policies whose saving is
        /// decided otherwise, such as SimLayerKV's threshold: an equal-memory comparison leaves them out).
        public let holdsBudget: Bool
        /// Whether `kvbench`'s default evaluation grid runs it (false where scoring costs several
        /// prefills of every prompt, as KVzip's and KVCompose's replays do: name them with `--policies`).
        public let inDefaultEvaluation: Bool

        /// Creates an entry whose policy needs no head pattern.
        public init(name: String, kvpressName: String?, summary: String, holdsBudget: Bool = true,
                    inDefaultEvaluation: Bool = true,
                    make: @escaping @Sendable (KVBudget, KVSchedule) throws(KVError) -> any KVCachePolicy) {
            self.init(name: name, kvpressName: kvpressName, summary: summary, holdsBudget: holdsBudget,
                      inDefaultEvaluation: inDefaultEvaluation) {
                b, s, _ throws(KVError) in try make(b, s)
            }
        }

        /// Creates an entry whose policy reads the model's head patterns.
        public init(name: String, kvpressName: String?, summary: String, holdsBudget: Bool = true,
                    inDefaultEvaluation: Bool = true, build: @escaping @Sendable (KVBudget, KVSchedule, KVHeadPatterns) throws(KVError) -> any KVCachePolicy) {
            self.name = name
            self.kvpressName = kvpressName
            self.summary = summary
            self.holdsBudget = holdsBudget
            self.inDefaultEvaluation = inDefaultEvaluation
            self.build = build
        }

        /// Builds the policy (see ``build``).
        public func make(_ budget: KVBudget, _ schedule: KVSchedule,
                         patterns: KVHeadPatterns = KVHeadPatterns()) throws(KVError) -> any KVCachePolicy {
            try build(budget, schedule, patterns)
        }
    }

    /// Every named policy, in the order tools list them.
    public static let entries: [Entry] = [
        Entry(name: "Full", kvpressName: nil, summary: "no compression (reference)") { _, _ throws(KVError) in FullCache() },
        Entry(name: "StreamingLLM", kvpressName: "StreamingLLMPress", summary: "4 sinks + most recent tokens") {
            b, _ throws(KVError) in try StreamingLLM(budget: b) },
        Entry(name: "StreamingLLMRepositioned", kvpressName: nil,
              summary: "StreamingLLM, keys at in-cache positions: streams past the context length") {
            b, _ throws(KVError) in try StreamingLLM(budget: b, repositionKeys: true) },
        Entry(name: "SnapKV", kvpressName: "SnapKVPress", summary: "last-64-query window vote, pooled") {
            b, s throws(KVError) in try SnapKV(budget: b, schedule: s) },
        Entry(name: "PyramidKV", kvpressName: "PyramidKVPress", summary: "SnapKV scores, budgets decreasing with depth") {
            b, s throws(KVError) in try PyramidKV(budget: b, schedule: s) },
        Entry(name: "H2O", kvpressName: nil, summary: "accumulated attention heavy hitters + recent window") {
            b, _ throws(KVError) in try H2O(budget: b) },
        Entry(name: "ObservedAttention", kvpressName: "ObservedAttentionPress", summary: "mean attention received over the prompt") {
            b, s throws(KVError) in try ObservedAttention(budget: b, schedule: s) },
        Entry(name: "TOVA", kvpressName: "TOVAPress", summary: "last query's attention, mean over all heads") {
            b, s throws(KVError) in try TOVA(budget: b, schedule: s) },
        Entry(name: "Knorm", kvpressName: "KnormPress", summary: "keep keys with the smallest L2 norm") {
            b, s throws(KVError) in try Knorm(budget: b, schedule: s) },
        Entry(name: "ExpectedAttention", kvpressName: "ExpectedAttentionPress", summary: "attention expected from future queries' statistics") {
            b, s throws(KVError) in try ExpectedAttention(budget: b, schedule: s) },
        Entry(name: "ExpectedAttentionStats", kvpressName: "ExpectedAttentionStatsPress",
              summary: "attention expected from the model's offline query statistics (shipped for the default model)") {
            b, s, p throws(KVError) in try ExpectedAttention(budget: b, statistics: try p.requireExpectedAttention(), schedule: s) },
        Entry(name: "KeyDiff", kvpressName: "KeyDiffPress", summary: "keep keys least similar to the mean key") {
            b, s throws(KVError) in try KeyDiff(budget: b, schedule: s) },
        Entry(name: "AdaKV", kvpressName: "AdaKVPress", summary: "head-adaptive budgets over SnapKV scores") {
            b, s throws(KVError) in try AdaKV(scorer: try SnapKVScorer(), budget: b, schedule: s) },
        Entry(name: "CUR", kvpressName: "CURPress", summary: "keep entries with the largest key x value leverage") {
            b, s throws(KVError) in try CUR(budget: b, schedule: s) },
        Entry(name: "LagKV", kvpressName: "LagKVPress", summary: "per 128-token partition, tokens most unlike the next partition") {
            b, s throws(KVError) in try LagKV(budget: b, schedule: s) },
        Entry(name: "NonCausalAttention", kvpressName: "NonCausalAttnPress",
              summary: "prompt attention both ways inside 256-token tiles, times value norms") {
            b, s throws(KVError) in try NonCausalAttention(budget: b, schedule: s) },
        Entry(name: "ChunkKV", kvpressName: "ChunkKVPress", summary: "SnapKV scores, whole 20-token chunks kept or evicted") {
            b, s throws(KVError) in try ChunkKV(scorer: try SnapKVScorer(), budget: b, schedule: s) },
        Entry(name: "Random", kvpressName: "RandomPress", summary: "uniform random entries, seed 0 (the baseline)") {
            b, s throws(KVError) in try RandomEviction(budget: b, schedule: s) },
        Entry(name: "LeverageScore", kvpressName: "LeverageScorePress", summary: "pre-RoPE key outliers by sketched leverage (seed 0)") {
            b, s throws(KVError) in try LeverageScore(budget: b, schedule: s) },
        Entry(name: "Compactor", kvpressName: "CompactorPress",
              summary: "key leverage blended with non-causal tile attention; 8 + 4 sinks") {
            b, s throws(KVError) in try Compactor(budget: b, schedule: s) },
        Entry(name: "Cap", kvpressName: "CapPress", summary: "entries taking the most output capacity, weighted by query alignment") {
            b, s throws(KVError) in try Cap(budget: b, schedule: s) },
        Entry(name: "CriticalKV", kvpressName: "CriticalKVPress",
              summary: "SnapKV scores, half the budget rescaled by the values' output norms") {
            b, s throws(KVError) in try CriticalKV(scorer: try SnapKVScorer(), budget: b, schedule: s) },
        Entry(name: "CriticalAdaKV", kvpressName: "CriticalAdaKVPress",
              summary: "AdaKV budgets over SnapKV scores, filled as CriticalKV") {
            b, s throws(KVError) in try CriticalAdaKV(scorer: try SnapKVScorer(), budget: b, schedule: s) },
        Entry(name: "Merging", kvpressName: "MergingPress", summary: "SnapKV selection, dropped values merged into similar kept ones") {
            b, s throws(KVError) in try Merging(scorer: try SnapKVScorer(), budget: b, schedule: s) },
        Entry(name: "Finch", kvpressName: "FinchPress",
              summary: "the last 64 prompt tokens (the question) vote, position-weighted; keys re-rotated to 0..<n") {
            b, s throws(KVError) in KeyRerotation(base: try Finch(budget: b, schedule: s)) },
        Entry(name: "SimLayerKV", kvpressName: "SimLayerKVPress",
              summary: "lazy layers (threshold 0.9) keep 4 initial + 1023 recent tokens; no budget", holdsBudget: false) {
            _, _ throws(KVError) in try SimLayerKV() },
        Entry(name: "ThinK", kvpressName: "ThinKPress",
              summary: "each head's prompt keys keep the 1 - ratio of their channels with the most query x key energy "
                + "(half with a token or byte budget); values and tokens untouched", holdsBudget: false) {
            b, _ throws(KVError) in
            guard case .compressionRatio(let r) = b else { return try ThinK(keyChannelRatio: 0.5) }
            return try ThinK(keyChannelRatio: r)
        },
        Entry(name: "DuoAttention", kvpressName: "DuoAttentionPress",
              summary: "retrieval heads keep everything, streaming heads sinks + recent (the model's gate pattern)") {
            b, _, p throws(KVError) in try DuoAttention(pattern: try p.requireDuo(), budget: b) },
        Entry(name: "RazorAttention", kvpressName: nil,
              summary: "echo/induction heads keep everything, the others sinks + buffer + a compensation token") {
            b, s, p throws(KVError) in try RazorAttention(heads: try p.requireRazor(), budget: b, schedule: s) },
        Entry(name: "CAKE", kvpressName: nil,
              summary: "layer budgets by window-attention dispersion x shift (cascading); mean + 200 x variance ranking") {
            b, _ throws(KVError) in try CAKE(budget: b) },
        Entry(name: "QFilter", kvpressName: "QFilterPress",
              summary: "keys most aligned with the head's dominant query direction (the model's calibrated filters)") {
            b, s, p throws(KVError) in try QFilter(filters: try p.requireQFilters(), budget: b, schedule: s) },
        Entry(name: "KVzap", kvpressName: "KVzapPress",
              summary: "entries a trained surrogate rates highest from their hidden states (needs --kvzap DIR)") {
            b, s, p throws(KVError) in
            ScoredPolicy(scorer: KVzapScorer(surrogate: try p.requireKVzap()), selector: try UniformSelector(budget: b), schedule: s) },
        Entry(name: "LUKV", kvpressName: "LUKVPress",
              summary: "per-head shares from the model's LU-KV budget curve (--lukv-curve) over ExpectedAttention (epsilon 0.02)") {
            b, s, p throws(KVError) in try lukv(try ExpectedAttentionScorer(epsilon: 0.02), b, s, p) },
        Entry(name: "FastKVzip", kvpressName: "FastKVzipPress",
              summary: "KVzip's global ranking from trained gates instead of replays (needs --fastkvzip-gates)") {
            b, _, p throws(KVError) in try FastKVzip(gates: try p.requireFastKVzip(), budget: b) },
        Entry(name: "KVzip", kvpressName: "KVzipPress",
              summary: "entries the model attends to most while repeating the prompt; one ranking over all layers and heads",
              inDefaultEvaluation: false) {
            b, _ throws(KVError) in try KVzip(budget: b) },
        Entry(name: "KVzip+", kvpressName: nil,
              summary: "KVzip's replays, each probability weighted by the value's output norm over the query's input norm",
              inDefaultEvaluation: false) {
            b, _ throws(KVError) in try KVzip(budget: b, plusNormalization: true) },
        Entry(name: "RestoreKV", kvpressName: "RestoreKVPress",
              summary: "KVzip, plus learned restore tokens run once with a LoRA adapter (needs --restorekv DIR)",
              inDefaultEvaluation: false) {
            b, _, p throws(KVError) in try RestoreKV(artifact: try p.requireRestoreKV(), budget: b) },
        Entry(name: "KVgrad", kvpressName: "KVgradPress",
              summary: "KVzip's replays run backward too: attention x value output norm x gradient norm of the output energy",
              inDefaultEvaluation: false) {
            b, _ throws(KVError) in try KVgrad(budget: b) },
        Entry(name: "KVCompose", kvpressName: "KVComposePress",
              summary: "replayed prompt's attention; layer budgets from composite curves, equal counts per head",
              inDefaultEvaluation: false) {
            b, _ throws(KVError) in try KVCompose(budget: b) },
    ]

    /// The entry for `name` (library or kvpress name, case-insensitive), or for a wrapper around
    /// any scorer, `WRAPPER:INNER` (``wrappers`` and ``scorers``; `AdaKVPress:ExpectedAttentionPress`).
    /// - Throws: `KVError.invalidParameter` listing the known names.
    public static func entry(named name: String) throws(KVError) -> Entry {
        if let wrapped = try wrappedEntry(named: name) { return wrapped }
        let key = name.lowercased()
        if let e = entries.first(where: { $0.name.lowercased() == key || $0.kvpressName?.lowercased() == key }) {
            return e
        }
        throw .invalidParameter(name: "policy", value: name,
                                expected: "one of " + entries.map(\.name).joined(separator: ", ")
                                    + " (kvpress class names such as SnapKVPress are accepted too), or WRAPPER:INNER "
                                    + "(e.g. AdaKV:ExpectedAttention)")
    }

    /// Builds the policy `name` with `budget` (and `schedule`, default ``KVSchedule/prefill``;
    /// `patterns`, the model's head patterns, for DuoAttention and RazorAttention).
    public static func make(_ name: String, budget: KVBudget, schedule: KVSchedule = .prefill,
                            patterns: KVHeadPatterns = KVHeadPatterns()) throws(KVError) -> any KVCachePolicy {
        try entry(named: name).make(budget, schedule, patterns: patterns)
    }
}
