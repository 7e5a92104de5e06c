/// SnapKV: after the prompt, each KV head keeps the entries the last `window` prompt queries voted
/// for (pooled window attention, group mean) plus the window itself. See ``SnapKVScorer``.
///
/// kvpress parity: `SnapKV(compressionRatio: r)` equals `SnapKVPress(compression_ratio=r,
/// window_size=64, kernel_size=5)`: `max(1, Int(L * (1 - r)))` entries per head, window included.
///
/// Paper: Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024
/// (arXiv 2404.14469). References: FasterDecoding/SnapKV, NVIDIA/kvpress `snapkv_press.py`.
public struct SnapKV: KVScoredPolicy {
    /// The window vote.
    public let scorer: SnapKVScorer
    /// Uniform per-head budget.
    public let selector: UniformSelector
    /// When to evict (``KVSchedule/prefill``: once after the prompt, as kvpress).
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, window or kernel.
    public init(budget: KVBudget, window: Int = 64, kernelSize: Int = 5, schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try SnapKVScorer(window: window, kernelSize: kernelSize)
        selector = try UniformSelector(budget: budget)
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed).
    public init(compressionRatio: Double, window: Int = 64, kernelSize: Int = 5,
                schedule: KVSchedule = .prefill) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), window: window, kernelSize: kernelSize, schedule: schedule)
    }

    /// `"SnapKV"`.
    public var name: String { "SnapKV" }
}
