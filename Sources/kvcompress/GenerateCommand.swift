import Foundation
import KVCompress
import KVModel

/// `kvcompress generate`: streams a continuation and ends with a stats line.
enum GenerateCommand {
    static func run(_ arguments: ArraySlice<String>) throws -> Void {
        let o = try CommandLineOptions(
            arguments,
            valued: ["--model", "--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p", "--seed",
                     "--policy", "--ratio", "--chunk", "--threads"],
            boolean: ["--exact"])
        guard let prompt = o.string("--prompt") else {
            throw CommandLineOptions.UsageError(description: "generate needs --prompt TEXT")
        }
        let maxTokens = try o.int("--max-tokens", default: 64)
        let sampling = try SamplingParameters(
            temperature: Float(try o.double("--temperature", default: 0)),
            topK: try o.int("--top-k", default: 40),
            topP: Float(try o.double("--top-p", default: 0.95)),
            seed: UInt64(clamping: try o.int("--seed", default: 0)))
        let threads = try o.int("--threads", default: ThreadPool.shared.threadCount)
        guard threads >= 1 else {
            throw CommandLineOptions.UsageError(description: "--threads expects a value >= 1")
        }
        var policy: any KVCachePolicy = FullCache()
        if let name = o.string("--policy") {
            policy = try KVPolicyCatalog.make(name, budget: .compressionRatio(try o.double("--ratio", default: 0.5)))
        } else if o.string("--ratio") != nil {
            throw CommandLineOptions.UsageError(description: "--ratio needs --policy NAME")
        }
        let model = try LlamaModel(path: o.string("--model") ?? "default", mode: o.has("--exact") ? .exact : .fast)
        let session = try LlamaSession(model: model, policy: policy, chunkSize: try o.int("--chunk", default: 512),
                                       pool: threads == ThreadPool.shared.threadCount ? .shared : ThreadPool(threads: threads))
        let result = try session.generate(prompt: prompt, maxTokens: maxTokens, sampling: sampling) { piece in
            FileHandle.standardOutput.write(Data(piece.utf8))
        }
        print()
        let stats = String(format: "[prompt %d tok, prefill %.1f tok/s | generated %d tok (%@), decode %.1f tok/s | cache %d bytes]",
                           result.promptTokens, result.prefillTokensPerSecond, result.tokens.count,
                           result.stopReason.rawValue, result.decodeTokensPerSecond, result.cacheBytes)
        FileHandle.standardError.write(Data((stats + "\n").utf8))
    }
}
