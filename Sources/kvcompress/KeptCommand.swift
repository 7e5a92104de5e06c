import Foundation
import KVCompress
import KVModel

/// `kvcompress kept`: the kvpress parity procedure for any policy and ratio.
enum KeptCommand {
    static let usage = """
    kvcompress kept --policy NAME --ratio R --prompt-ids FILE --out FILE [--model PATH|default]
    kvcompress kept --policy list

    Runs the kvpress parity procedure (exact mode, every id prefilled in one pass, each layer
    compressed right after its attention) and writes the kept original positions as
    {"kept": {NAME: {"R": [[[positions...] per KV head] per layer]}}}.

      --policy NAME     a policy or kvpress class name (SnapKVPress, StreamingLLMPress, KnormPress,
                        TOVAPress, ExpectedAttentionPress, ObservedAttentionPress, PyramidKVPress,
                        KeyDiffPress, AdaKVPress); 'list' prints them all
                        or WRAPPER:INNER (ChunkKVPress:SnapKVPress; DMSPress@-19:KnormPress, the
                        threshold after '@')
      --ratio R         fraction of the entries removed, in [0, 1) (not needed by the policies that hold
                        no budget: SimLayerKV, DMS; the JSON key is then "none")
      --kvzap DIR       KVzap's surrogate (config.json + model.safetensors) for KVzap and WRAPPER:KVzap
      --lukv-curve FILE LU-KV's budget curve (.npy [99, layers, kv_heads]) for LUKV and LUKV:INNER
      --fastkvzip-gates FILE  Fast KVzip's trained gates (.pt) for FastKVzip
      --restorekv DIR   RestoreKV's restore embeddings and LoRA adapter for RestoreKV
      --expected-attention-stats DIR  offline query statistics for ExpectedAttentionStats (default:
                        shipped for the default model)
      --prompt-ids FILE a JSON array of token ids, or an object with a 'prompt_ids' array
      --out FILE        where the JSON goes (checked for writing before any work)
      --backend B       where attention runs: cpu (default), cuda, automatic
    """

    static func run(_ arguments: ArraySlice<String>) throws {
        let o = try CommandLineOptions(arguments, valued: ["--policy", "--ratio", "--model", "--prompt-ids", "--out",
                                                                  "--duo-pattern", "--razor-heads", "--qfilters", "--kvzap", "--lukv-curve",
                                                                  "--expected-attention-stats", "--fastkvzip-gates", "--restorekv", "--backend"],
                                       boolean: [])
        if o.wantsHelp { print(usage); return }
        guard let name = o.string("--policy") else {
            throw CommandLineOptions.UsageError(description: "kept needs --policy NAME (or --policy list)")
        }
        if name == "list" {
            printCatalog()
            return
        }
        guard let idsPath = o.string("--prompt-ids") else {
            throw CommandLineOptions.UsageError(description: "kept needs --prompt-ids FILE")
        }
        guard let outPath = o.string("--out") else {
            throw CommandLineOptions.UsageError(description: "kept needs --out FILE")
        }
        let entry: KVPolicyCatalog.Entry
        do { entry = try KVPolicyCatalog.entry(named: name) } catch {
            throw CommandLineOptions.UsageError(description: SessionOptions.policyMessage(name, error) + " (run 'kvcompress kept --policy list')")
        }
        // Policies that hold no budget (SimLayerKV's threshold, DMS@T) need no ratio.
        guard let ratioText = o.string("--ratio") ?? (entry.holdsBudget ? nil : "none") else {
            throw CommandLineOptions.UsageError(description: "kept needs --ratio R (fraction of entries removed, 0 <= R < 1)")
        }
        let ratio = try o.double("--ratio", default: 0, expected: "a fraction in [0, 1)") { $0 >= 0 && $0 < 1 }
        let policy = try entry.make(.compressionRatio(ratio), .prefill, patterns: try SessionOptions.headPatterns(o))
        let backend = try SessionOptions.backend(o).resolved()
        try checkWritable(outPath)
        let ids = try PromptIDs.load(path: idsPath)
        let model = try LlamaModel(path: o.string("--model") ?? "default", mode: .exact)
        let kept = try KeptPositions.compute(model: model, promptTokens: ids, policy: policy, backend: backend)
        let json: [String: Any] = ["kept": [name: [ratioText: kept]]]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        do {
            try data.write(to: URL(fileURLWithPath: outPath))
        } catch {
            throw KVError.io(path: outPath, reason: error.localizedDescription)
        }
        let total = kept.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } }
        FileHandle.standardError.write(Data("kept \(total) entries over \(kept.count) layers -> \(outPath)\n".utf8))
    }

    /// The catalog as an aligned table.
    static func printCatalog() {
        let rows = [("NAME", "KVPRESS CLASS", "WHAT IT KEEPS")]
            + KVPolicyCatalog.entries.map { ($0.name, $0.kvpressName ?? "-", $0.summary) }
        let w0 = rows.map(\.0.count).max()!, w1 = rows.map(\.1.count).max()!
        for r in rows {
            print(r.0.padding(toLength: w0 + 2, withPad: " ", startingAt: 0)
                + r.1.padding(toLength: w1 + 2, withPad: " ", startingAt: 0) + r.2)
        }
        print("\nWRAPPER:INNER (e.g. AdaKV:ExpectedAttention, ChunkKVPress:TOVAPress): "
            + KVPolicyCatalog.wrappers.map(\.name).joined(separator: ", ") + " around any of "
            + KVPolicyCatalog.scorers.map(\.name).joined(separator: ", "))
    }

    /// Fails before any work when `path` cannot be written: its directory must exist and be
    /// writable, and the path must not be a directory or a read-only file.
    static func checkWritable(_ path: String) throws {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: path)
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard !isDirectory.boolValue else { throw CommandLineOptions.UsageError(description: "--out \(path) is a directory") }
            guard fm.isWritableFile(atPath: path) else {
                throw CommandLineOptions.UsageError(description: "--out \(path) is not writable")
            }
            return
        }
        let dir = url.deletingLastPathComponent().path
        guard fm.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CommandLineOptions.UsageError(description: "--out \(path): directory \(dir) does not exist")
        }
        guard fm.isWritableFile(atPath: dir) else {
            throw CommandLineOptions.UsageError(description: "--out \(path): directory \(dir) is not writable")
        }
    }
}
