import Foundation

/// llama.cpp's own `llama-bench` on the same GGUF file, run by `kvbench model` right after its own
/// rows and by the evaluation after its tasks when `KVBENCH_LLAMA_BENCH` names the binary
/// (`../shared/tools/llama-bench.sh` builds it), so that both sets of figures come from the same
/// machine in the same hour.
enum LlamaBench {
    /// Environment variable naming the llama-bench binary.
    static let variable = "KVBENCH_LLAMA_BENCH"

    /// One llama-bench figure.
    struct Figure {
        /// `prefill` or `decode`.
        let kind: String
        /// Prompt tokens (prefill) or context depth (decode).
        let tokens: Int
        let flashAttention: Bool
        let threads: Int
        let tokensPerSecond: Double
    }

    /// The binary `KVBENCH_LLAMA_BENCH` names, nil (with a message when it is set but not
    /// executable) otherwise.
    static var binary: String? {
        guard let binary = ProcessInfo.processInfo.environment[variable], !binary.isEmpty else { return nil }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            FileHandle.standardError.write(Data("kvbench: \(variable)=\(binary) is not an executable file\n".utf8))
            return nil
        }
        return binary
    }

    /// Prefill at `lengths` tokens (unless `prefill` is false) and decode (`decodeSteps` tokens) at
    /// those context depths, `threads` threads, one repetition each, with flash attention on (its
    /// fastest CPU setting for decoding at long context) and off (or the settings in
    /// `flashAttention`), keys and values cached as `cacheType` (llama.cpp's `-ctk`/`-ctv`), its
    /// defaults otherwise. `announce` sees each command line before it runs. Empty when the binary
    /// fails (with a message).
    static func measure(binary: String, modelPath: String, lengths: [Int], decodeSteps: Int, threads: [Int],
                        flashAttention: [Bool] = [true, false], cacheType: String = "f16", prefill: Bool = true,
                        announce: (String) -> Void = { _ in }) -> [Figure] {
        let list = lengths.map(String.init).joined(separator: ",")
        var figures: [Figure] = []
        for t in threads {
            for flash in flashAttention {
                let runs: [(String, [String])] = (prefill ? [("prefill", ["-p", list, "-n", "0"])] : [])
                    + [("decode", ["-p", "0", "-n", String(decodeSteps), "-d", list])]
                for (kind, args) in runs {
                    let all = ["-m", modelPath, "-t", String(t), "-r", "1", "-fa", flash ? "1" : "0", "-ctk", cacheType,
                               "-ctv", cacheType, "-o", "json"] + args
                    announce("llama-bench " + all.joined(separator: " "))
                    for r in launch(binary, all) ?? [] {
                        guard let rate = r["avg_ts"] as? Double else { continue }
                        let n = kind == "prefill" ? r["n_prompt"] as? Int ?? 0 : r["n_depth"] as? Int ?? 0
                        figures.append(Figure(kind: kind, tokens: n, flashAttention: flash, threads: t, tokensPerSecond: rate))
                    }
                }
            }
        }
        return figures
    }

    /// `kvbench model`'s rows: every figure of ``measure(binary:modelPath:lengths:decodeSteps:threads:announce:)``
    /// with the ratio of KVCompress's figure measured earlier in the same run (`ours`, keyed by
    /// ``key(_:_:_:)``). Adds nothing without the binary.
    static func run(_ ctx: BenchContext, modelPath: String, lengths: [Int], decodeSteps: Int, threads: [Int],
                    ours: [String: Double]) {
        guard let binary else { return }
        let figures = measure(binary: binary, modelPath: modelPath, lengths: lengths, decodeSteps: decodeSteps,
                              threads: threads) { if !ctx.options.json { print("model: " + $0) } }
        for f in figures {
            let name = (f.kind == "prefill" ? "llama.cpp prefill \(f.tokens) tok" : "llama.cpp decode at context \(f.tokens)")
                + (f.flashAttention ? ", fa on" : ", fa off")
            let ratio = ours[key(f.kind, f.tokens, f.threads)].map { String(format: "KVCompress / llama.cpp = %.2fx", $0 / f.tokensPerSecond) }
            ctx.addValue(group: "model", name: name, threads: f.threads, value: f.tokensPerSecond, unit: "tok/s",
                         timing: Timing(min: 1 / f.tokensPerSecond, median: 1 / f.tokensPerSecond),
                         note: ["llama-bench, same machine and run", ratio].compactMap { $0 }.joined(separator: "; "))
        }
    }

    /// The key of KVCompress's figure for a llama-bench row: `kind` is `prefill` or `decode`.
    static func key(_ kind: String, _ tokens: Int, _ threads: Int) -> String { "\(kind)|\(tokens)|\(threads)" }

    /// Runs the binary and returns its JSON result objects, or nil (with a message) on failure.
    private static func launch(_ binary: String, _ arguments: [String]) -> [[String: Any]]? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            FileHandle.standardError.write(Data("kvbench: cannot run \(binary): \(error)\n".utf8))
            return nil
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let parsed = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            FileHandle.standardError.write(Data("kvbench: llama-bench failed (status \(process.terminationStatus))\n".utf8))
            return nil
        }
        return parsed
    }
}
