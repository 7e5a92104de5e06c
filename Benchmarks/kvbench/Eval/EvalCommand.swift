import Foundation
import KVCompress
import KVModel

/// `kvbench` with no group, `kvbench eval` and `kvbench report`: the evaluation and its report.
enum EvalCommand {
    /// Runs the evaluation; returns the exit status (0 success, 1 failure, 2 bad arguments).
    static func eval(_ arguments: [String]) -> Int32 {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(EvalOptions.usage)
            return 0
        }
        let options: EvalOptions
        do {
            options = try EvalOptions.parse(arguments)
        } catch {
            return usage(error.description)
        }
        do {
            let out = URL(fileURLWithPath: options.out, isDirectory: true)
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            let resultsURL = out.appendingPathComponent("results.json")
            let model = try LlamaModel(path: "default", mode: .fast)
            let modelURL = try ModelStore.defaultModelURL()
            let settings = EvalSettings(
                mode: options.mode, tasks: options.tasks, policies: options.policies, budgets: options.budgets.map(\.label),
                contexts: options.contexts, depths: options.depths, seeds: options.seeds,
                needleContexts: options.needleContexts, perplexityTokens: options.perplexityTokens,
                perplexityBudgets: options.perplexityBudgets.map(\.label), needleKeys: options.needleKeys,
                model: "\(modelURL.lastPathComponent) sha256 \(ModelStore.defaultSHA256)", text: EvalText.label)
            let commit = gitCommit()
            var run = EvalRun(commit: commit, date: "", command: (["kvbench"] + arguments).joined(separator: " "),
                              machine: machine(threads: options.threads), settings: settings, cells: [])
            if let data = try? Data(contentsOf: resultsURL), let previous = try? EvalRun.decoder.decode(EvalRun.self, from: data) {
                if previous.commit == commit && previous.settings == settings && !commit.hasSuffix("-dirty") {
                    run.cells = previous.cells
                    log("reusing \(previous.cells.count) cells measured at \(previous.date) (same commit and settings) from \(resultsURL.path)")
                } else {
                    let old = out.appendingPathComponent("results.previous.json")
                    try? FileManager.default.removeItem(at: old)
                    try FileManager.default.moveItem(at: resultsURL, to: old)
                    log("\(resultsURL.path) is from another commit or other settings (or a modified tree): starting over "
                        + "(the old file is now \(old.lastPathComponent))")
                }
            }
            let runner = EvalRunner(options: options, model: model, run: run, resultsURL: resultsURL)
            try runner.runAll()
            try EvalReport.write(runner.run, to: out)
            print(EvalReport.summary(runner.run))
            log("results in \(out.path): results.json, results.csv, report.md, plots/")
            return 0
        } catch {
            FileHandle.standardError.write(Data("kvbench: \(error)\n".utf8))
            return 1
        }
    }

    /// `kvbench report --from FILE [--out DIR]`: renders the report and plots again from the data.
    static func report(_ arguments: [String]) -> Int32 {
        var from: String?, out: String?
        var i = 0
        while i < arguments.count {
            switch arguments[i] {
            case "--help", "-h":
                print(EvalOptions.usage)
                return 0
            case "--from", "--out":
                guard i + 1 < arguments.count else { return usage("\(arguments[i]) needs a value") }
                if arguments[i] == "--from" { from = arguments[i + 1] } else { out = arguments[i + 1] }
                i += 1
            default:
                return usage("unknown argument '\(arguments[i])'")
            }
            i += 1
        }
        guard let from else { return usage("report needs --from DIR/results.json") }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: from))
            let run = try EvalRun.decoder.decode(EvalRun.self, from: data)
            let dir = URL(fileURLWithPath: out ?? URL(fileURLWithPath: from).deletingLastPathComponent().path, isDirectory: true)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try EvalReport.write(run, to: dir)
            print(EvalReport.summary(run))
            return 0
        } catch let error as DecodingError {
            FileHandle.standardError.write(Data("kvbench report: \(from) is not a kvbench results file (\(error))\n".utf8))
            return 1
        } catch {
            FileHandle.standardError.write(Data("kvbench report: \(from): \(error.localizedDescription)\n".utf8))
            return 1
        }
    }

    private static func usage(_ message: String) -> Int32 {
        FileHandle.standardError.write(Data("kvbench: \(message)\n(see kvbench eval --help)\n".utf8))
        return 2
    }

    private static func log(_ message: String) {
        FileHandle.standardError.write(Data("kvbench: \(message)\n".utf8))
    }

    /// `git describe`-like id of the working tree: the short commit, `-dirty` with local changes,
    /// `unknown` outside a repository.
    static func gitCommit() -> String {
        func git(_ args: [String]) -> String? {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["git"] + args
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return nil }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : nil
        }
        guard let head = git(["rev-parse", "--short=12", "HEAD"]) else { return "unknown" }
        let dirty = !(git(["status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty
        return head + (dirty ? "-dirty" : "")
    }

    /// The machine as the results record it.
    static func machine(threads: Int) -> EvalMachine {
        var cpu = "unknown"
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
           let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
           let name = line.split(separator: ":", maxSplits: 1).last {
            cpu = name.trimmingCharacters(in: .whitespaces)
        }
        return EvalMachine(cpu: cpu, cores: ProcessInfo.processInfo.activeProcessorCount, isa: Kernels.isa.description,
                           os: ProcessInfo.processInfo.operatingSystemVersionString, threads: threads)
    }
}
