import Foundation
import KVCompress
import KVModel

/// `kvcompress kept`: the kvpress parity procedure for any policy and ratio.
enum KeptCommand {
    static func run(_ arguments: ArraySlice<String>) throws -> Void {
        let o = try CommandLineOptions(arguments, valued: ["--policy", "--ratio", "--model", "--prompt-ids", "--out"],
                                       boolean: [])
        guard let name = o.string("--policy") else {
            throw CommandLineOptions.UsageError(description: "kept needs --policy NAME (or --policy list)")
        }
        if name == "list" {
            for e in KVPolicyCatalog.entries {
                print("\(e.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(e.kvpressName ?? "-")  \(e.summary)")
            }
            return
        }
        guard let ratioText = o.string("--ratio") else {
            throw CommandLineOptions.UsageError(description: "kept needs --ratio R (fraction of entries removed, 0 <= R < 1)")
        }
        let ratio = try o.double("--ratio", default: 0)
        guard let idsPath = o.string("--prompt-ids"), let outPath = o.string("--out") else {
            throw CommandLineOptions.UsageError(description: "kept needs --prompt-ids FILE and --out FILE")
        }
        let policy = try KVPolicyCatalog.make(name, budget: .compressionRatio(ratio))
        let ids = try PromptIDs.load(path: idsPath)
        let model = try LlamaModel(path: o.string("--model") ?? "default", mode: .exact)
        let kept = try KeptPositions.compute(model: model, promptTokens: ids, policy: policy)
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
}
