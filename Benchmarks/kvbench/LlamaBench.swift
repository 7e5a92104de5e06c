import Foundation

/// llama.cpp's own `llama-bench` on the same GGUF file, run by `kvbench model` right after its own
/// rows when `KVBENCH_LLAMA_BENCH` names the binary (`../shared/tools/llama-bench.sh` builds it),
/// so that both sets of figures come from the same machine in the same hour.
enum LlamaBench {
    /// Environment variable naming the llama-bench binary.
    static let variable = "KVBENCH_LLAMA_BENCH"

    /// Prefill at `lengths` tokens and decode at those context depths (f16 cache, llama.cpp's
    /// defaults otherwise), `threads` threads, one repetition each, with flash attention on (its
    /// fastest CPU setting for decoding at long context) and off; adds a row per figure with the
    /// ratio of KVCompress's figure measured earlier in the same run (`ours`, keyed by
    /// ``key(_:_:_:)``). Prints a clear message and adds nothing when the binary is missing or fails.
    static func run(_ ctx: BenchContext, modelPath: String, lengths: [Int], decodeSteps: Int, threads: [Int],
                    ours: [String: Double]) {
        guard let binary = ProcessInfo.processInfo.environment[variable], !binary.isEmpty else { return }
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            FileHandle.standardError.write(Data("kvbench model: \(variable)=\(binary) is not an executable file\n".utf8))
            return
        }
        let list = lengths.map(String.init).joined(separator: ",")
        for t in threads {
            for flash in [true, false] {
                let runs: [(String, [String])] = [
                    ("prefill", ["-p", list, "-n", "0"]),
                    ("decode", ["-p", "0", "-n", String(decodeSteps), "-d", list]),
                ]
                for (kind, args) in runs {
                    let all = ["-m", modelPath, "-t", String(t), "-r", "1", "-fa", flash ? "1" : "0", "-o", "json"] + args
                    if !ctx.options.json { print("model: llama-bench \(all.joined(separator: " "))") }
                    guard let results = launch(binary, all) else { continue }
                    for r in results {
                        guard let rate = r["avg_ts"] as? Double else { continue }
                        let prompt = r["n_prompt"] as? Int ?? 0, depth = r["n_depth"] as? Int ?? 0
                        let n = kind == "prefill" ? prompt : depth
                        let name = (kind == "prefill" ? "llama.cpp prefill \(n) tok" : "llama.cpp decode at context \(n)")
                            + (flash ? ", fa on" : ", fa off")
                        let ratio = ours[key(kind, n, t)].map { String(format: "KVCompress / llama.cpp = %.2fx", $0 / rate) }
                        ctx.addValue(group: "model", name: name, threads: t, value: rate, unit: "tok/s",
                                     timing: Timing(min: 1 / rate, median: 1 / rate),
                                     note: ["llama-bench, same machine and run", ratio].compactMap { $0 }.joined(separator: "; "))
                    }
                }
            }
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
            FileHandle.standardError.write(Data("kvbench model: cannot run \(binary): \(error)\n".utf8))
            return nil
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let parsed = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            FileHandle.standardError.write(Data("kvbench model: llama-bench failed (status \(process.terminationStatus))\n".utf8))
            return nil
        }
        return parsed
    }
}
