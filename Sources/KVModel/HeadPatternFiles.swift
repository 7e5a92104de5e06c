import Foundation
import KVCompress

/// Reads and writes head-pattern files: DuoAttention's directory (`full_attention_heads.tsv` and
/// `config.json`) and RazorAttention's head list (JSON), and gives the patterns a model comes with.
public enum HeadPatternFiles {
    /// The TSV's name inside a DuoAttention pattern directory.
    public static let duoTSV = "full_attention_heads.tsv"
    /// The config's name inside a DuoAttention pattern directory.
    public static let duoConfig = "config.json"

    /// Reads a DuoAttention pattern directory.
    /// - Throws: `KVError.io` when a file cannot be read; `.malformedFile` for bad contents.
    public static func loadDuo(directory: String) throws(KVError) -> DuoAttentionPattern {
        try DuoAttentionPattern(tsv: try read(directory + "/" + duoTSV), config: try read(directory + "/" + duoConfig),
                                path: directory)
    }

    /// Writes a DuoAttention pattern directory (created if missing), `extra` going into the config.
    /// - Throws: `KVError.io` when it cannot be written.
    public static func writeDuo(_ pattern: DuoAttentionPattern, directory: String, extra: [String: String] = [:]) throws(KVError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .io(path: directory, reason: error.localizedDescription)
        }
        try write(pattern.tsv, to: directory + "/" + duoTSV)
        try write(pattern.configJSON(extra: extra), to: directory + "/" + duoConfig)
    }

    /// Reads a RazorAttention head list.
    /// - Throws: `KVError.io` when it cannot be read; `.malformedFile` for bad contents.
    public static func loadRazor(path: String) throws(KVError) -> RazorHeads {
        try RazorHeads(json: try read(path), path: path)
    }

    /// Writes a RazorAttention head list.
    /// - Throws: `KVError.io` when it cannot be written.
    public static func writeRazor(_ heads: RazorHeads, path: String) throws(KVError) {
        try write(heads.json, to: path)
    }

    /// Reads Q-filters.
    /// - Throws: `KVError.io` when the file cannot be read; `.malformedFile` for bad contents.
    public static func loadQFilters(path: String) throws(KVError) -> QFilters {
        try QFilters(tsv: try read(path), path: path)
    }

    /// Writes Q-filters.
    /// - Throws: `KVError.io` when the file cannot be written.
    public static func writeQFilters(_ filters: QFilters, path: String) throws(KVError) {
        try write(filters.tsv, to: path)
    }

    /// The patterns shipped for the default model (``ModelStore``'s SmolLM2-135M-Instruct), made by
    /// `kvcompress calibrate duo|razor|qfilter` with their defaults (the same texts are in the
    /// repository's `Patterns/SmolLM2-135M-Instruct/`), and its Expected Attention statistics
    /// (`calibrate expected-attention`, a resource: nil when the resource bundle is not found).
    public static let defaultModel: KVHeadPatterns = {
        do {
            return KVHeadPatterns(
                duo: try DuoAttentionPattern(tsv: ShippedPatterns.duoTSV, config: ShippedPatterns.duoConfig,
                                             path: "(shipped DuoAttention pattern)"),
                razor: try RazorHeads(json: ShippedPatterns.razorJSON, path: "(shipped RazorAttention heads)"),
                qFilters: try QFilters(tsv: ShippedPatterns.qFiltersTSV, path: "(shipped Q-filters)"),
                expectedAttention: ShippedResources.directory("expected-attention-stats").flatMap { try? ExpectedAttentionStats(directory: $0) })
        } catch {
            preconditionFailure("the shipped head patterns do not parse: \(error)")
        }
    }()

    static func read(_ path: String) throws(KVError) -> String {
        do {
            return try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .io(path: path, reason: error.localizedDescription)
        }
    }

    static func write(_ text: String, to path: String) throws(KVError) {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw .io(path: path, reason: error.localizedDescription)
        }
    }
}
