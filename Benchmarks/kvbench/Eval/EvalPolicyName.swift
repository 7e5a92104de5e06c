import KVCompress
import KVCore

/// A policy of the evaluation: a catalog policy, optionally over a quantized cache, named `POLICY`
/// (f16 cache), `POLICY+FORMAT` (`SnapKV+q4_0`, `Full+q8_0`) or `POLICY+KEYS/VALUES`
/// (`TOVA+q8_0/q4_1`: keys and values apart). At a byte budget smaller entries let the policy keep
/// more of them, so eviction, quantization and both together compare at equal memory.
struct EvalPolicyName: Hashable {
    /// The catalog name (`Full` for the full cache).
    let policy: String
    /// The keys' and values' formats; nil for the default f16 cache.
    let keyFormat: KVEntryFormat?
    let valueFormat: KVEntryFormat?

    /// The name in tables and results: `POLICY`, `POLICY+format` or `POLICY+keys/values`.
    var label: String {
        guard keyFormat != nil || valueFormat != nil else { return policy }
        let k = Self.name(keyFormat), v = Self.name(valueFormat)
        return policy + "+" + (k == v ? k : "\(k)/\(v)")
    }

    /// Whether it keeps every entry (the full cache, in any format).
    var isFull: Bool { policy == EvalDigest.fullPolicy }

    /// The group of runs that can share one prefill pass: the same cache formats.
    var formats: [KVEntryFormat?] { [keyFormat, valueFormat] }

    init(policy: String, keyFormat: KVEntryFormat? = nil, valueFormat: KVEntryFormat? = nil) {
        self.policy = policy
        self.keyFormat = keyFormat == .rows(.f16) ? nil : keyFormat
        self.valueFormat = valueFormat == .rows(.f16) ? nil : valueFormat
    }

    /// Parses `POLICY`, `POLICY+FORMAT` or `POLICY+KEYS/VALUES` (catalog or kvpress names; formats as
    /// `kvcompress --cache` takes them).
    init(parsing text: String) throws(EvalUsageError) {
        let parts = text.split(separator: "+", maxSplits: 1).map(String.init)
        let name: String
        do { name = try KVPolicyCatalog.entry(named: parts.first ?? "").name } catch {
            throw EvalUsageError("--policies: unknown policy '\(parts.first ?? "")'; known: "
                + KVPolicyCatalog.entries.map(\.name).joined(separator: ", ") + " (each optionally +FORMAT or +KEYS/VALUES)")
        }
        guard parts.count == 2 else {
            self.init(policy: name)
            return
        }
        let formats = parts[1].split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var parsed: [KVEntryFormat] = []
        for f in formats {
            guard formats.count <= 2, let t = KVEntryFormat(name: f) else {
                throw EvalUsageError("--policies: unknown cache format '\(parts[1])' in '\(text)'; formats: "
                    + KVEntryFormat.supportedNames.joined(separator: ", ")
                    + " (one for keys and values, or KEYS/VALUES)")
            }
            parsed.append(t)
        }
        self.init(policy: name, keyFormat: parsed[0], valueFormat: parsed.last)
    }

    /// The label's parts again (for names read back from a results file).
    init(label: String) {
        let parts = label.split(separator: "+", maxSplits: 1).map(String.init)
        let formats = parts.count == 2 ? parts[1].split(separator: "/").map { KVEntryFormat(name: String($0)) } : []
        self.init(policy: parts.first ?? label, keyFormat: formats.first ?? nil, valueFormat: formats.last ?? nil)
    }

    private static func name(_ format: KVEntryFormat?) -> String { (format ?? .rows(.f16)).description }
}
