import Foundation

/// A DuoAttention head pattern: one gate per (layer, KV head), high for retrieval heads (which
/// need the whole context) and low for streaming heads (attention sinks + recent tokens suffice),
/// with the sink and recent sizes streaming heads keep.
///
/// The files are the reference's: a directory with `full_attention_heads.tsv` (one line per layer,
/// one tab-separated gate per KV head; values are clipped to `[0, 1]` on reading, as the reference
/// loads them) and `config.json` (its training arguments, of which deployment reads `sink_size` and
/// `recent_size`). ``tsv`` / ``configJSON`` write them, ``init(tsv:config:path:)`` reads them;
/// `kvcompress calibrate duo` makes them for a model without a released pattern.
///
/// Reference: mit-han-lab/duo-attention `duo_attn/utils.py` (`load_attn_pattern`,
/// `sparsify_attention_heads`).
public struct DuoAttentionPattern: Sendable, Equatable {
    /// Gates in `[0, 1]`, `[layer][head]`.
    public let gates: KVHeadScores
    /// Attention sinks a streaming head keeps (the reference's released patterns: 128; its demo 64).
    public let sinkSize: Int
    /// Recent tokens a streaming head keeps (256 in the released patterns).
    public let recentSize: Int

    /// Creates a pattern.
    /// - Throws: `KVError.invalidParameter` for a negative sink size or a recent size below 1.
    public init(gates: KVHeadScores, sinkSize: Int, recentSize: Int) throws(KVError) {
        guard sinkSize >= 0 else { throw .invalidParameter(name: "sinkSize", value: "\(sinkSize)", expected: ">= 0") }
        guard recentSize >= 1 else { throw .invalidParameter(name: "recentSize", value: "\(recentSize)", expected: ">= 1") }
        self.gates = try KVHeadScores(gates.values.map { $0.map { min(1, max(0, $0)) } })
        self.sinkSize = sinkSize
        self.recentSize = recentSize
    }

    /// Reads a pattern from the texts of `full_attention_heads.tsv` and `config.json`.
    /// - Parameters:
    ///   - path: the directory, for error messages.
    /// - Throws: `KVError.malformedFile` for a TSV that is not a table of numbers, a config that is
    ///   not a JSON object or lacks an integer `sink_size` or `recent_size`.
    public init(tsv: String, config: String, path: String) throws(KVError) {
        let gates = try KVHeadScores.parseTSV(tsv, path: path + "/full_attention_heads.tsv")
        let configPath = path + "/config.json"
        guard let object = try? JSONSerialization.jsonObject(with: Data(config.utf8)) as? [String: Any] else {
            throw .malformedFile(path: configPath, field: "(root)", offset: 0, reason: "not a JSON object")
        }
        func integer(_ key: String) throws(KVError) -> Int {
            guard let n = object[key] as? NSNumber, let v = Int(exactly: n.doubleValue) else {
                throw .malformedFile(path: configPath, field: key, offset: 0,
                                     reason: "missing or not an integer (the number of tokens a streaming head keeps)")
            }
            return v
        }
        try self.init(gates: gates, sinkSize: try integer("sink_size"), recentSize: try integer("recent_size"))
    }

    /// The `full_attention_heads.tsv` text.
    public var tsv: String { gates.tsv }

    /// A `config.json` text with `sink_size`, `recent_size` and `extra` (how the pattern was made).
    public func configJSON(extra: [String: String] = [:]) -> String {
        var lines = ["  \"sink_size\": \(sinkSize)", "  \"recent_size\": \(recentSize)"]
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) {
            let escaped = v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            lines.append("  \"\(k)\": \"\(escaped)\"")
        }
        return "{\n" + lines.joined(separator: ",\n") + "\n}\n"
    }

    /// Which heads stay full (retrieval) when a fraction `sparsity` of all heads stream, as the
    /// reference's `sparsify_attention_heads`: uniform noise in `[0, 1e-6)` (seeded) breaks ties,
    /// the threshold is the `sparsity` quantile of all gates (linear interpolation, NumPy's
    /// default), and heads at or above it are retrieval heads; `sparsity >= 1` makes every head
    /// streaming, `<= 0` none.
    /// - Returns: `[layer][head]`, true for a retrieval head.
    public func retrievalHeads(sparsity: Double, seed: UInt32 = 0) -> [[Bool]] {
        let (layers, heads) = (gates.layers, gates.kvHeads)
        if sparsity >= 1 { return Array(repeating: Array(repeating: false, count: heads), count: layers) }
        if sparsity <= 0 { return Array(repeating: Array(repeating: true, count: heads), count: layers) }
        var rng = MersenneTwister(seed: seed)
        let noisy = gates.values.map { row in row.map { Double($0) + Double(rng.nextUnitFloat()) * 1e-6 } }
        let sorted = noisy.flatMap { $0 }.sorted()
        let index = sparsity * Double(sorted.count - 1)
        let lo = Int(index.rounded(.down))
        let hi = min(lo + 1, sorted.count - 1)
        let threshold = sorted[lo] + (sorted[hi] - sorted[lo]) * (index - Double(lo))
        return noisy.map { row in row.map { $0 >= threshold } }
    }
}
