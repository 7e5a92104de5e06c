/// PyramidKV: SnapKV's scores with layer-decreasing budgets (more entries in lower layers), same mean
/// as the uniform budget. See ``PyramidSelector`` for kvpress's exact budget formula, including its
/// uniform fallback with `round()` (L = 1510, r = 0.8 keeps 302 per head where SnapKV keeps 301).
///
/// Paper: Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information
/// Funneling" (arXiv 2406.02069). References: Zefan-Cai/KVCache-Factory, NVIDIA/kvpress
/// `pyramidkv_press.py`.
public struct PyramidKV: KVScoredPolicy {
    /// The window vote.
    public let scorer: SnapKVScorer
    /// Pyramid budgets.
    public let selector: PyramidSelector
    /// When to evict (``KVSchedule/prefill``: once after the prompt, as kvpress).
    public let schedule: KVSchedule

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, window, kernel or beta.
    public init(budget: KVBudget, window: Int = 64, kernelSize: Int = 5, beta: Double = 20,
                schedule: KVSchedule = .prefill) throws(KVError) {
        scorer = try SnapKVScorer(window: window, kernelSize: kernelSize)
        selector = try PyramidSelector(budget: budget, window: window, beta: beta)
        self.schedule = schedule
    }

    /// Creates the policy with a compression ratio (fraction removed, on average over layers).
    public init(compressionRatio: Double, window: Int = 64, kernelSize: Int = 5, beta: Double = 20) throws(KVError) {
        try self.init(budget: .compressionRatio(compressionRatio), window: window, kernelSize: kernelSize, beta: beta)
    }

    /// `"PyramidKV"`.
    public var name: String { "PyramidKV" }
}
