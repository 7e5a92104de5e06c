import Foundation
import KVCompress
import KVModel

/// The evaluation's grid and where its results go (`kvbench eval`, the default command).
struct EvalOptions {
    /// `quick` (about a minute), `default` (about an hour on 2 cores with 24 policies) or `full` (hours).
    var mode = "default"
    var tasks = ["passkey", "needle", "perplexity", "attention-error"]
    /// The catalog's policies that hold a budget and can be built for the default model (the quick
    /// grid: all of them; the others: those in the default evaluation, which leaves out KVzip, KVzip+,
    /// KVgrad and KVCompose: their replays cost several prefills). Policies whose trained artifact
    /// exists only for other models (KVzap, FastKVzip, LUKV, RestoreKV) are left out.
    var policies: [String] = defaultPolicies.map(\.name)
    static let defaultPolicies = buildable.filter(\.inDefaultEvaluation)
    static let buildable = KVPolicyCatalog.entries.filter {
        $0.holdsBudget && (try? $0.make(.compressionRatio(0.5), .prefill, patterns: HeadPatternFiles.defaultModel)) != nil
    }
    var budgets: [EvalBudget] = [.fraction(0.5), .fraction(0.25), .fraction(0.1)]
    var contexts = [1024, 2048, 4096, 8192]
    var depths = [0, 0.25, 0.5, 0.75, 1.0]
    var seed = 1
    var seedCount = 2
    var needleContexts = [2048, 4096]
    var needleKeys = 4
    var perplexityTokens = 10_240
    var perplexityBudgets: [EvalBudget] = [.fraction(0.25)]
    var out = "kvbench-results"
    var threads = ThreadPool.shared.threadCount

    static let usage = """
        usage: kvbench [eval] [--quick | --full] [options]
               kvbench report --from DIR/results.json [--out DIR]

        Evaluates every policy of the catalog against the full cache at equal cache memory on the
        default model (downloaded on first use): passkey retrieval over contexts x depths x seeds, a
        multi-key needle in a haystack, streaming perplexity over a real text (Debian gnu-standards,
        fetched once and pinned by SHA-256) with each policy's cache bounded, and the per-layer error
        of the attention output against the full cache. Writes DIR/results.json, results.csv,
        report.md and plots/*.svg; prints the headline table on stdout, progress on stderr. A rerun with the
        same --out, commit and settings reuses the cells already measured, so an interrupted run
        resumes. Exit status: 0 success, 1 failure, 2 bad arguments.

        modes:
          (default)         contexts 1K,2K,4K,8K x 5 depths x 2 seeds, budgets 50%,25%,10%; needle at
                            2K,4K; perplexity over 10,240 tokens at 25% (53 minutes on 2 cores, 24 policies)
          --quick           context 1K x 3 depths x 1 seed at 25%, perplexity over 1,024 tokens (~1 minute)
          --full            5 seeds, 11 depths, budgets 75%..5%, needle at every context, perplexity
                            over the whole text (58,662 tokens) at every budget, every policy also over
                            q8_0, q8_0/q4_1 and q4_0 caches (hours)

        options:
          --policies LIST   catalog names (default: all that hold a budget, not SimLayerKV or ThinK, and
                            not KVzip, KVzip+, KVgrad or KVCompose, whose replays cost several prefills,
                            except in the quick grid; never KVzap, FastKVzip, LUKV or RestoreKV, whose
                            trained artifacts exist only for other models), each optionally +FORMAT or
                            +KEYS/VALUES for a quantized cache
                            (q8_0, q4_0, q4_1, bf16, f32; e.g. Full+q4_0,TOVA+q8_0/q4_1): at a byte
                            budget smaller entries let a policy keep more; the f16 full cache is
                            always the baseline
          --budgets LIST    full, N% (of the full f16 cache's bytes at that context), ratio=R,
                            NMB / NKB / NB (whole cache), Ntok (entries per KV head)
          --contexts LIST   prompt lengths in tokens, e.g. 1K,2K,4K,8K or 1024,3000
          --tasks LIST      passkey, needle, perplexity, attention-error (default: all)
          --seed N          first seed (default 1); --seeds K seeds from it (default 2)
          --out DIR         results folder (default kvbench-results)
          --threads N       threads (default: all cores)
        """

    /// Parses the arguments after `eval` (or all of them for a bare `kvbench`).
    static func parse(_ arguments: [String]) throws(EvalUsageError) -> EvalOptions {
        var o = EvalOptions()
        var i = 0
        func value(_ flag: String) throws(EvalUsageError) -> String {
            i += 1
            guard i < arguments.count else { throw EvalUsageError("\(flag) needs a value") }
            return arguments[i]
        }
        func list(_ flag: String) throws(EvalUsageError) -> [String] {
            let items = try value(flag).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !items.isEmpty, !items.contains("") else { throw EvalUsageError("\(flag) needs a comma-separated list") }
            return items
        }
        func positive(_ flag: String) throws(EvalUsageError) -> Int {
            let text = try value(flag)
            guard let v = Int(text), v >= 1 else { throw EvalUsageError("\(flag) expects an integer >= 1, got '\(text)'") }
            return v
        }
        var quick = false, full = false
        var policies: [String]?, budgets: [EvalBudget]?, contexts: [Int]?, tasks: [String]?, seeds: Int?
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "--quick": quick = true
            case "--full": full = true
            case "--policies":
                policies = try list(a).map { name throws(EvalUsageError) in try EvalPolicyName(parsing: name).label }
            case "--budgets":
                var parsed: [EvalBudget] = []
                for b in try list(a) { parsed.append(try EvalBudget(parsing: b)) }
                budgets = parsed
            case "--contexts":
                var parsed: [Int] = []
                for c in try list(a) {
                    let k = c.uppercased().hasSuffix("K")
                    guard let v = Int(k ? String(c.dropLast()) : c).map({ k ? $0 * 1024 : $0 }), v >= 64 else {
                        throw EvalUsageError("--contexts: '\(c)' is not a length in tokens (>= 64; 1K = 1024)")
                    }
                    parsed.append(v)
                }
                contexts = parsed
            case "--tasks":
                let known = EvalOptions().tasks
                let parsed = try list(a)
                if let bad = parsed.first(where: { !known.contains($0) }) {
                    throw EvalUsageError("--tasks: unknown task '\(bad)'; tasks: \(known.joined(separator: ", "))")
                }
                tasks = parsed
            case "--seed":
                let text = try value(a)
                guard let v = Int(text), v >= 0 else { throw EvalUsageError("--seed expects an integer >= 0, got '\(text)'") }
                o.seed = v
            case "--seeds": seeds = try positive(a)
            case "--out": o.out = try value(a)
            case "--threads": o.threads = try positive(a)
            default:
                throw EvalUsageError("unknown argument '\(a)'")
            }
            i += 1
        }
        guard !(quick && full) else { throw EvalUsageError("--quick and --full exclude each other") }
        if quick {
            o.mode = "quick"
            o.contexts = [1024]
            o.depths = [0, 0.5, 1]
            o.seedCount = 1
            o.budgets = [.fraction(0.25)]
            o.needleContexts = [1024]
            o.perplexityTokens = 1024
            o.policies = buildable.map(\.name)
        } else if full {
            o.mode = "full"
            o.depths = (0...10).map { Double($0) / 10 }
            o.seedCount = 5
            o.budgets = [.fraction(0.75), .fraction(0.5), .fraction(0.25), .fraction(0.1), .fraction(0.05)]
            o.needleContexts = o.contexts
            o.perplexityTokens = Int.max
            o.perplexityBudgets = o.budgets
            let formats: [(KVEntryFormat, KVEntryFormat)] = [(.rows(.q8_0), .rows(.q8_0)), (.rows(.q8_0), .rows(.q4_1)),
                                                             (.rows(.q4_0), .rows(.q4_0)), (.kivi(bits: 4), .kivi(bits: 4)),
                                                             (.kivi(bits: 2), .kivi(bits: 2)), (.zipCache, .zipCache)]
            o.policies += formats.flatMap { k, v in
                EvalOptions.defaultPolicies.map { EvalPolicyName(policy: $0.name, keyFormat: k, valueFormat: v).label }
            }
        }
        if let policies { o.policies = policies }
        if let budgets {
            o.budgets = budgets
            o.perplexityBudgets = full ? budgets : [budgets[budgets.count / 2]]
        }
        if let contexts {
            o.contexts = contexts
            o.needleContexts = full ? contexts : Array(contexts.prefix(2))
        }
        if let tasks { o.tasks = tasks }
        if let seeds { o.seedCount = seeds }
        if !o.policies.contains("Full") { o.policies.insert("Full", at: 0) }
        return o
    }

    /// The seeds of the grid.
    var seeds: [Int] { (0..<seedCount).map { seed + $0 } }
}
