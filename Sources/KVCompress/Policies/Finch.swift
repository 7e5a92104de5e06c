/// FINCH: the prompt's question votes for the context entries it attends to, SnapKV-style, with
/// each question token's attention weighted by its position (``SnapKVScorer`` with
/// `weightsByPosition`, no pooling); the question's own entries are always kept. Entries are really
/// evicted.
///
/// kvpress finds the question with a delimiter token the caller inserts between context and
/// question (``delimiter``, removed from the sequence before the model sees it); here the policy
/// takes the question's length (``questionTokens``), which KVModel's
/// `Tokenizer.encode(_:questionAfter:)` counts from the same delimiter in a prompt's text (and
/// `kvcompress generate --policy Finch` reads from the prompt). kvpress re-rotates the kept keys to positions
/// `0 ..< n` by default: the catalog's `Finch` is `KeyRerotation(base: Finch(...))`, and this type
/// alone keeps original positions (kvpress's `rerotate_keys=False`). kvpress's optional per-chunk
/// budgets (`chunk_length`) are not offered.
///
/// Paper: Corallo and Papotti, "FINCH: Prompt-guided Key-Value Cache Compression for Large Language
/// Models", TACL 2024. Reference: NVIDIA/kvpress `finch_press.py` (kept sets equal to kvpress
/// 0.5.5's at ratios 0.5 and 0.8 on the fixture prompt with its last 11 tokens as the question).
public struct Finch: KVScoredPolicy {
    /// The question's window vote.
    public let scorer: SnapKVScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict.
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Parameter questionTokens: how many trailing prompt tokens are the question (the window).
    /// - Throws: `KVError.invalidParameter` for an invalid budget or `questionTokens < 1`.
    public init(budget: KVBudget, questionTokens: Int = 64, schedule: KVSchedule = .prefill) throws(KVError) {
        guard questionTokens >= 1 else {
            throw .invalidParameter(name: "questionTokens", value: "\(questionTokens)", expected: ">= 1 (the question's tokens at the end of the prompt)")
        }
        scorer = try SnapKVScorer(window: questionTokens, kernelSize: 1, weightsByPosition: true)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// The text kvpress's FINCH puts between the context and the question (`<|finch_sep|>`).
    public static let delimiter = "<|finch_sep|>"

    /// The question's length in tokens.
    public var questionTokens: Int { scorer.window }

    /// `"Finch"`.
    public var name: String { "Finch" }
}
