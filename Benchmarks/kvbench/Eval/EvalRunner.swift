import Foundation
import KVCompress
import KVModel

/// Runs the evaluation's cells, skipping the ones already measured, and saves `results.json` after
/// every prompt so that an interrupted run resumes.
final class EvalRunner {
    let options: EvalOptions
    let model: LlamaModel
    let pool: ThreadPool
    var run: EvalRun
    let resultsURL: URL
    private var done: Set<String>
    private var progress: ProgressLine
    /// Work in prompt tokens (a prompt's length, or a perplexity run's tokens), the unit of the
    /// progress line: an 8K prompt takes about eight times a 1K one.
    private let plannedWork: Int
    private var doneWork = 0

    /// Tokens generated greedily for a retrieval answer (a 5-digit key and its punctuation).
    static let answerTokens = 8

    init(options: EvalOptions, model: LlamaModel, run: EvalRun, resultsURL: URL) {
        self.options = options
        self.model = model
        self.run = run
        self.resultsURL = resultsURL
        pool = options.threads == ThreadPool.shared.threadCount ? .shared : ThreadPool(threads: options.threads)
        done = Set(run.cells.map(\.key))
        let passkey = options.tasks.contains("passkey") || options.tasks.contains("attention-error")
        let runs = options.policies.count * options.perplexityBudgets.count - (options.perplexityBudgets.count - 1)
        plannedWork = (passkey ? options.contexts.reduce(0, +) * options.depths.count * options.seedCount : 0)
            + (options.tasks.contains("needle") ? options.needleContexts.reduce(0, +) * options.seedCount : 0)
            + (options.tasks.contains("perplexity") ? runs * min(options.perplexityTokens, EvalText.tokens) : 0)
        progress = ProgressLine(label: "kvbench eval")   // every property set: measuredWork() may run
        progress = ProgressLine(label: "kvbench eval", alreadyDone: measuredWork())
    }

    /// Work already in the results (prompts and perplexity runs with every cell measured).
    private func measuredWork() -> Int {
        func complete(_ task: String, context: Int, depth: Double?, seed: Int, budgets: [EvalBudget]) -> Bool {
            variants(budgets).allSatisfy { done.contains(Self.key(task, $0.policy, $0.budget, context: context, depth: depth, seed: seed)) }
        }
        var work = 0
        for context in options.contexts {
            for seed in options.seeds {
                for depth in options.depths where complete("passkey", context: context, depth: depth, seed: seed, budgets: options.budgets) {
                    work += context
                }
            }
        }
        for context in options.needleContexts {
            for seed in options.seeds where complete("needle", context: context, depth: nil, seed: seed, budgets: options.budgets) {
                work += context
            }
        }
        let tokens = min(options.perplexityTokens, EvalText.tokens)
        work += variants(options.perplexityBudgets).filter {
            done.contains(Self.key("perplexity", $0.policy, $0.budget, context: tokens, depth: nil, seed: 0))
        }.count * tokens
        return work
    }

    /// The (policy, budget) pairs a prompt is measured with: the full cache once, every other
    /// policy at every budget.
    func variants(_ budgets: [EvalBudget]) -> [(policy: String, budget: EvalBudget)] {
        options.policies.flatMap { p in EvalPolicyName(label: p).isFull ? [(p, EvalBudget.full)] : budgets.map { (p, $0) } }
    }

    static func key(_ task: String, _ policy: String, _ budget: EvalBudget, context: Int, depth: Double?, seed: Int) -> String {
        "\(task)|\(policy)|\(budget.label)|\(context)|\(depth.map { String($0) } ?? "-")|\(seed)"
    }

    /// Runs every task of the options.
    func runAll() throws {
        report()
        let retrieval = ["passkey", "attention-error"].filter(options.tasks.contains)
        if !retrieval.isEmpty {
            for context in options.contexts {
                for seed in options.seeds {
                    for depth in options.depths {
                        try retrievalPrompt(task: "passkey", context: context, depth: depth, seed: seed, errors: retrieval.contains("attention-error"),
                                            answers: retrieval.contains("passkey"))
                    }
                }
            }
        }
        if options.tasks.contains("needle") {
            for context in options.needleContexts {
                for seed in options.seeds {
                    try retrievalPrompt(task: "needle", context: context, depth: nil, seed: seed, errors: false, answers: true)
                }
            }
        }
        if options.tasks.contains("perplexity") { try perplexity() }
        try llamaBench()
    }

    /// With `KVBENCH_LLAMA_BENCH`: llama.cpp's prefill and decode at the passkey contexts, flash
    /// attention on and off, next to the full cache's median figures of this run (once per results
    /// folder: kept on a rerun).
    private func llamaBench() throws {
        guard run.llamaBench.isEmpty, let binary = LlamaBench.binary else { return }
        let full = run.cells.filter { $0.task == "passkey" && $0.policy == "Full" }
        var rows: [EvalLlamaRow] = []
        let figures = LlamaBench.measure(binary: binary, modelPath: try ModelStore.defaultModelURL().path,
                                         lengths: options.contexts, decodeSteps: Self.answerTokens, threads: [options.threads]) {
            FileHandle.standardError.write(Data("kvbench: \($0)\n".utf8))
        }
        for f in figures {
            let cells = full.filter { $0.context == f.tokens }
            let ours = (f.kind == "prefill" ? cells.compactMap(\.prefillTokensPerSecond) : cells.compactMap(\.decodeTokensPerSecond))
            guard !ours.isEmpty else { continue }
            rows.append(EvalLlamaRow(test: f.kind == "prefill" ? "prefill \(f.tokens)" : "decode at context \(f.tokens)",
                                     flashAttention: f.flashAttention, threads: f.threads,
                                     llamaTokensPerSecond: f.tokensPerSecond,
                                     kvcompressTokensPerSecond: Timing(samples: ours).median))
        }
        run.llamaBench = rows
        try save()
    }

    /// Counts `work` as done and prints the progress line (not for work measured by an earlier
    /// run, `measured: false`, which the line already counts as done).
    private func report(adding work: Int = 0, measured: Bool = true) {
        doneWork += work
        if measured { progress.update(done: min(max(doneWork, progress.alreadyDone), plannedWork), total: plannedWork, unit: "tok") }
    }

    private func save() throws {
        run.date = ISO8601DateFormatter().string(from: Date())
        try EvalRun.encoder.encode(run).write(to: resultsURL, options: .atomic)
    }

    private func record(_ cell: EvalCell) {
        run.cells.append(cell)
        done.insert(cell.key)
    }

    /// One retrieval prompt: per cache format, one shared prefill pass feeding every (policy,
    /// budget) of that format that still lacks a cell, then each one's greedy answer and attention
    /// error (against the f16 full cache's attention output).
    private func retrievalPrompt(task: String, context: Int, depth: Double?, seed: Int, errors: Bool, answers: Bool) throws {
        func missing(_ task: String, _ v: (policy: String, budget: EvalBudget)) -> Bool {
            !done.contains(Self.key(task, v.policy, v.budget, context: context, depth: depth, seed: seed))
        }
        let needed = variants(options.budgets).filter { v in
            (answers && missing(task, v)) || (errors && v.policy != EvalDigest.fullPolicy && missing("attention-error", v))
        }
        guard !needed.isEmpty else { return report(adding: context, measured: false) }
        let tokenizer = model.tokenizer
        // The answer must fit in the model's context too.
        let length = min(context, model.config.contextLength - Self.answerTokens)
        let prompt = task == "needle"
            ? try RetrievalPrompt.needle(tokenizer: tokenizer, context: length, keys: options.needleKeys, seed: UInt64(seed))
            : try RetrievalPrompt.passkey(tokenizer: tokenizer, context: length, depth: depth ?? 0, seed: UInt64(seed))
        let shape = model.shape
        // The f16 group first: its full cache's attention outputs are every group's reference.
        var formats: [[KVEntryFormat?]] = [[nil, nil]]
        for v in needed {
            let f = EvalPolicyName(label: v.policy).formats
            if !formats.contains(f) { formats.append(f) }
        }
        var reference: [[Float]] = []
        for format in formats {
            let group = needed.filter { EvalPolicyName(label: $0.policy).formats == format }
            let f16 = format == [nil, nil]
            guard !group.isEmpty || (f16 && errors) else { continue }
            let lead = try LlamaSession(model: model, keys: format[0], values: format[1], chunkSize: prompt.ids.count,
                                        pool: pool)
            var followers: [(policy: String, budget: EvalBudget, bytes: Int?, session: LlamaSession)] = []
            for v in group where !EvalPolicyName(label: v.policy).isFull {
                let (budget, bytes) = v.budget.resolve(tokens: prompt.ids.count, shape: shape)
                let policy = try KVPolicyCatalog.make(EvalPolicyName(label: v.policy).policy, budget: budget,
                                                      patterns: HeadPatternFiles.defaultModel)
                followers.append((v.policy, v.budget, bytes, try LlamaSession(model: model, policy: policy, keys: format[0],
                                                                              values: format[1], chunkSize: 1, pool: pool)))
            }
            let clock = ContinuousClock()
            let t0 = clock.now
            let shared = try lead.prefill(prompt.ids, sharingWith: followers.map(\.session))
            let prefill = Double(prompt.ids.count) / max((clock.now - t0).benchSeconds, 1e-9)
            // The last prompt token's attention output over the full cache, per layer.
            if f16 {
                reference = (0..<shape.layers).map { attentionOutput(query: shared.lastQueries[$0], cache: lead.cache, layer: $0) }
            }
            let first = shared.logits.withUnsafeBufferPointer { Sampler.argmax($0) }
            // The group's full cache measures itself like a follower (a quantized full cache has an
            // attention error too); the f16 one is the reference and has none.
            let fullLabel = EvalPolicyName(policy: EvalDigest.fullPolicy, keyFormat: format[0], valueFormat: format[1]).label
            let measured = followers + (group.contains { $0.policy == fullLabel } ? [(fullLabel, EvalBudget.full, nil, lead)] : [])
            for f in measured {
                let start = clock.now
                let bytes = f.session.cache.byteCount, peak = f.session.cache.peakByteCount
                let key = Self.key("attention-error", f.policy, f.budget, context: context, depth: depth, seed: seed)
                if errors && f.policy != EvalDigest.fullPolicy, !done.contains(key) {
                    let layerErrors = (0..<shape.layers).map { l -> Double in
                        relativeError(attentionOutput(query: shared.lastQueries[l], cache: f.session.cache, layer: l), reference[l])
                    }
                    record(EvalCell(key: key, task: "attention-error", policy: f.policy, budget: f.budget.label, budgetBytes: f.bytes,
                                    context: context, tokens: prompt.ids.count, depth: depth, seed: seed, layerErrors: layerErrors,
                                    cacheBytes: bytes, peakCacheBytes: peak, prefillTokensPerSecond: prefill,
                                    peakRSSBytes: ProcessMemory.peak, seconds: (clock.now - start).benchSeconds))
                }
                let answerKey = Self.key(task, f.policy, f.budget, context: context, depth: depth, seed: seed)
                if answers && !done.contains(answerKey) {
                    let (text, rate) = try answer(f.session, first: first)
                    record(EvalCell(key: answerKey, task: task, policy: f.policy, budget: f.budget.label, budgetBytes: f.bytes,
                                    context: context, tokens: prompt.ids.count, depth: depth, seed: seed,
                                    correct: text.contains(prompt.expected) ? 1 : 0, answer: text, expected: prompt.expected,
                                    cacheBytes: bytes, peakCacheBytes: peak, prefillTokensPerSecond: prefill,
                                    decodeTokensPerSecond: rate, peakRSSBytes: ProcessMemory.peak,
                                    seconds: (clock.now - start).benchSeconds))
                }
            }
        }
        try save()
        report(adding: context)
    }

    /// The greedy answer after the prompt (first token from the shared prompt pass) and the median
    /// decode rate of its steps.
    private func answer(_ session: LlamaSession, first: Int32) throws -> (String, Double) {
        var tokens = [first]
        var times: [Double] = []
        let clock = ContinuousClock()
        for _ in 1..<Self.answerTokens {
            let t = clock.now
            let logits = try session.decode(tokens.last!)
            times.append((clock.now - t).benchSeconds)
            tokens.append(logits.withUnsafeBufferPointer { Sampler.argmax($0) })
        }
        return (model.tokenizer.decode(tokens), 1 / Timing(samples: times).median)
    }

    /// Attention output `[heads][headDim]` of one query over one layer of a cache.
    private func attentionOutput(query: [Float], cache: KVCache, layer: Int) -> [Float] {
        var out = [Float](repeating: 0, count: query.count)
        Attention.decode(query: query, heads: model.shape.heads, headDim: model.shape.headDim,
                         parts: cache.headParts(layer: layer), output: &out, pool: pool)
        return out
    }

    private func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        var diff = 0.0, norm = 0.0
        for (x, y) in zip(a, b) {
            diff += Double(x - y) * Double(x - y)
            norm += Double(y) * Double(y)
        }
        return (diff / max(norm, 1e-30)).squareRoot()
    }

    /// Streaming perplexity: every (policy, budget) scores the text with its cache held at the
    /// budget (``KVSchedule/prefillAndDecode``), the budget being a share of the full cache at the
    /// model's context length; a policy that does not re-position keys stops at the context length.
    private func perplexity() throws {
        let text = try EvalText.load()
        var ids = try model.tokenizer.encode(text, parseSpecial: false)
        if model.tokenizer.addsBOS, ids.first == model.tokenizer.bosTokenID { ids.removeFirst() }
        let tokens = min(ids.count, options.perplexityTokens)
        let window = model.config.contextLength
        for v in variants(options.perplexityBudgets) {
            let key = Self.key("perplexity", v.policy, v.budget, context: tokens, depth: nil, seed: 0)
            if done.contains(key) {
                report(adding: tokens, measured: false)
                continue
            }
            let (budget, bytes) = v.budget.resolve(tokens: min(tokens, window), shape: model.shape)
            let name = EvalPolicyName(label: v.policy)
            let policy = try KVPolicyCatalog.make(name.policy, budget: budget, schedule: .prefillAndDecode,
                                                  patterns: HeadPatternFiles.defaultModel)
            let session = try LlamaSession(model: model, policy: policy, keys: name.keyFormat, values: name.valueFormat,
                                           chunkSize: 512, pool: pool)
            let r = try session.perplexity(tokens: Array(ids.prefix(tokens)))
            record(EvalCell(key: key, task: "perplexity", policy: v.policy, budget: v.budget.label, budgetBytes: bytes,
                            context: tokens, tokens: r.tokens, depth: nil, seed: 0, perplexity: r.perplexity,
                            scoredTokens: r.scoredTokens, stoppedAtContextLength: r.stoppedAtContextLength,
                            cacheBytes: r.finalCacheBytes, peakCacheBytes: r.peakCacheBytes,
                            prefillTokensPerSecond: r.tokensPerSecond, peakRSSBytes: ProcessMemory.peak, seconds: r.seconds))
            try save()
            report(adding: tokens)
        }
    }
}
