import KVCompress
import KVCore

/// A policy of the evaluation: a catalog policy, optionally over a quantized cache format, named
/// `POLICY` (f16 cache) or `POLICY+FORMAT` (`SnapKV+q4_0`, `Full+q8_0`). At a byte budget the
/// format's smaller entries let the policy keep more of them, so eviction, quantization and both
/// together compare at equal memory.
struct EvalPolicyName: Hashable {
    /// The catalog name (`Full` for the full cache).
    let policy: String
    /// The keys' and values' format; nil for the default f16 cache.
    let format: ElementType?

    /// The name in tables and results: `POLICY` or `POLICY+format`.
    var label: String { format.map { "\(policy)+\($0.description.lowercased())" } ?? policy }

    /// Whether it keeps every entry (the full cache, in any format).
    var isFull: Bool { policy == EvalDigest.fullPolicy }

    init(policy: String, format: ElementType? = nil) {
        self.policy = policy
        self.format = format == .f16 ? nil : format
    }

    /// Parses `POLICY` or `POLICY+FORMAT` (catalog or kvpress names; formats as `kvcompress --cache`
    /// takes them).
    init(parsing text: String) throws(EvalUsageError) {
        let parts = text.split(separator: "+", maxSplits: 1).map(String.init)
        let name: String
        do { name = try KVPolicyCatalog.entry(named: parts.first ?? "").name } catch {
            throw EvalUsageError("--policies: unknown policy '\(parts.first ?? "")'; known: "
                + KVPolicyCatalog.entries.map(\.name).joined(separator: ", ") + " (each optionally +FORMAT)")
        }
        var format: ElementType?
        if parts.count == 2 {
            guard let f = KVCache.supportedTypes.first(where: { $0.description.lowercased() == parts[1].lowercased() }) else {
                throw EvalUsageError("--policies: unknown cache format '\(parts[1])' in '\(text)'; formats: "
                    + KVCache.supportedTypes.map { $0.description.lowercased() }.joined(separator: ", "))
            }
            format = f
        }
        self.init(policy: name, format: format)
    }

    /// The label's parts again (for names read back from a results file).
    init(label: String) {
        let parts = label.split(separator: "+", maxSplits: 1).map(String.init)
        let format = parts.count == 2 ? KVCache.supportedTypes.first { $0.description.lowercased() == parts[1] } : nil
        self.init(policy: parts.first ?? label, format: format)
    }
}
