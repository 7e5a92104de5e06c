import Foundation
import KVCore

/// Options shared by every group.
struct BenchOptions: Sendable {
    /// Print the rows as JSON (one array) instead of a table.
    var json = false
    /// Thread counts to measure (each row says which).
    var threads: [Int] = [1, 2]
    /// Small sizes and few repetitions (CI smoke).
    var quick = false
    /// Sections of the `kernels` group to run (empty: all).
    var sections: [String] = []
    /// The `kernels` group's backend: the CPU kernels, or the CUDA backend's rows.
    var backend: KVBackend = .cpu
}

/// Argument parsing and group dispatch.
enum BenchCommandLine {
    static let usage = """
        usage: kvbench [eval] [--quick | --full] [eval options]   the evaluation (kvbench eval --help)
               kvbench report --from DIR/results.json              its report again, from the data
               kvbench <group> [options]                           performance groups

        groups:
        \(BenchGroup.all.map { "  \($0.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \($0.summary)" }.joined(separator: "\n"))

        options:
          --json            print the rows as one JSON array
          --threads LIST    comma-separated thread counts (default 1,2)
          --quick           small sizes, few repetitions (CI smoke)
          --backend B       kernels group only: cpu (default) or cuda (CPU vs CUDA differences, device
                            copy bandwidth, decode attention GB/s at 32K and 128K tokens over it,
                            prefill TFLOP/s, model decode with attention on the GPU)
          --sections LIST   kernels group only: comma-separated sections to run, of
                            \(KernelBenchmarks.sections.map(\.name).joined(separator: ", "))
          --help            this text

        environment:
          KVBENCH_CACHE_TOKENS=N   rows for the kernels group's cache rows (default 16384; e.g.
                                   524288 to measure them from DRAM instead of L2/L3)
          KVCOMPRESS_THREADS=N     size of ThreadPool.shared (library default: all cores)
          KVK_ISA=NAME             kernel instruction set: amx, avx512, avx2, neon or scalar
                                   (default: the best this machine supports)
          KVBENCH_LLAMA_BENCH=PATH model group: also run llama.cpp's llama-bench (this binary) on the
                                   same model file, same lengths and threads (build it with
                                   ../shared/tools/llama-bench.sh)

        Every throughput is printed next to a read bandwidth measured in the same run (a sum over a
        buffer of the same byte size, same threads, its samples alternating with the kernel's) and
        their ratio, since absolute numbers drift on shared machines. Times are the minimum and
        median of repeated runs after warm-up; a row whose median is more than 20 % above its
        minimum is marked "noisy" (something else had the core during its samples: rerun it).
        Rows the project sets a target for say whether this run met it ("target ...: met" or
        "MISSED"); a 2-thread decode row also gives its speedup over the 1-thread row above it.
        """

    static func run(arguments: [String]) -> Int32 {
        // The evaluation is the default command; `eval` and `report` take their own options.
        if arguments.first == "eval" { return EvalCommand.eval(Array(arguments.dropFirst())) }
        if arguments.first == "report" { return EvalCommand.report(Array(arguments.dropFirst())) }
        let namesGroup = arguments.contains { a in BenchGroup.all.contains { $0.name == a } }
        let wantsHelp = arguments.contains("--help") || arguments.contains("-h")
        if !namesGroup && !wantsHelp { return EvalCommand.eval(arguments) }
        var options = BenchOptions()
        var groupNames: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "--help", "-h":
                print(usage)
                return 0
            case "--json": options.json = true
            case "--quick": options.quick = true
            case "--threads":
                i += 1
                guard i < arguments.count else { return fail("--threads needs a list, e.g. --threads 1,2") }
                let parsed = arguments[i].split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !parsed.isEmpty, parsed.allSatisfy({ ($0 ?? 0) >= 1 }) else {
                    return fail("--threads: expected positive integers separated by commas, got '\(arguments[i])'")
                }
                options.threads = parsed.map { $0! }
            case "--backend":
                i += 1
                guard i < arguments.count, let b = KVBackend(rawValue: arguments[i]), b != .automatic else {
                    return fail("--backend needs cpu or cuda")
                }
                options.backend = b
            case "--sections":
                i += 1
                let known = KernelBenchmarks.sections.map(\.name)
                guard i < arguments.count else { return fail("--sections needs a list, e.g. --sections attention") }
                let names = arguments[i].split(separator: ",").map { String($0) }
                if let bad = names.first(where: { !known.contains($0) }) {
                    return fail("--sections: unknown section '\(bad)'; sections: \(known.joined(separator: ", "))")
                }
                options.sections = names
            default:
                if a.hasPrefix("-") { return fail("unknown option '\(a)'") }
                groupNames.append(a)
            }
            i += 1
        }
        if groupNames.isEmpty {
            print(usage)
            return 0
        }
        var groups: [BenchGroup] = []
        for name in groupNames {
            guard let g = BenchGroup.all.first(where: { $0.name == name }) else {
                return fail("unknown group '\(name)'; groups: \(BenchGroup.all.map(\.name).joined(separator: ", "))")
            }
            groups.append(g)
        }
        #if DEBUG
        let warning = """
            ************************************************************************
            WARNING: kvbench was built WITHOUT optimization (debug). Numbers are
            meaningless. Use: swift build -c release --product kvbench
            ************************************************************************
            """
        FileHandle.standardError.write((warning + "\n").data(using: .utf8)!)
        #endif
        let context = BenchContext(options: options)
        for g in groups { g.run(context) }
        context.report.finish(json: options.json)
        return 0
    }

    private static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write("kvbench: \(message)\n(see kvbench --help)\n".data(using: .utf8)!)
        return 2
    }
}
