import Foundation

/// One measured cell of the evaluation: one task instance (a prompt, or a text) under one policy at
/// one cache budget. Cells are the unit of resumption: a rerun with the same `--out`, commit and
/// settings skips every cell whose ``key`` is already in `results.json`.
struct EvalCell: Codable, Sendable, Equatable {
    /// Unique within a run: task, policy, budget, context, depth and seed.
    var key: String
    /// `passkey`, `needle` (multi-key needle in a haystack), `perplexity` or `attention-error`.
    var task: String
    /// The catalog name of the policy (`Full` is the full-cache baseline).
    var policy: String
    /// The budget's label as given (`full`, `50%`, `25%`, `10%`, `ratio=0.5`, `2MB`, `256tok`).
    var budget: String
    /// The cache bytes the budget allows at this cell's context (nil for `ratio=` budgets and the
    /// full cache).
    var budgetBytes: Int?
    /// The nominal context (1024, 2048, 4096, 8192; the text's scored length for `perplexity`).
    var context: Int
    /// The prompt's real token count (question included), or the tokens fed for `perplexity`.
    var tokens: Int
    /// Passkey / needle depth in `0...1` (nil for the other tasks).
    var depth: Double?
    /// The seed the task instance was generated from.
    var seed: Int
    /// Retrieval tasks: 1 if the greedy answer contains the expected digits, else 0.
    var correct: Int?
    /// Retrieval tasks: the decoded greedy answer and the expected key.
    var answer: String?
    var expected: String?
    /// `perplexity`: the perplexity, the tokens scored, and whether scoring stopped at the model's
    /// context length (the policy does not re-position keys).
    var perplexity: Double?
    var scoredTokens: Int?
    var stoppedAtContextLength: Bool?
    /// `attention-error`: per layer, `||o - o_full|| / ||o_full||` for the last prompt token's
    /// attention output over the policy's cache against the full cache.
    var layerErrors: [Double]?
    /// Cache bytes really held after the prompt (`KVCache.byteCount`; for `perplexity`, at the end).
    var cacheBytes: Int
    /// The largest cache size during the cell (`KVCache.peakByteCount`).
    var peakCacheBytes: Int
    /// Prompt tokens per second (the shared prefill pass, for retrieval tasks).
    var prefillTokensPerSecond: Double?
    /// Median decode tokens per second over the answer's steps (retrieval tasks).
    var decodeTokensPerSecond: Double?
    /// The process's peak resident set size when the cell finished, in bytes.
    var peakRSSBytes: Int?
    /// Wall seconds the cell took.
    var seconds: Double
}

/// What the machine and build were.
struct EvalMachine: Codable, Sendable, Equatable {
    var cpu: String
    var cores: Int
    var isa: String
    var os: String
    var threads: Int
}

/// The settings that define a grid; a resumed run must have the same settings and commit.
struct EvalSettings: Codable, Sendable, Equatable {
    var mode: String            // "quick", "default" or "full"
    var tasks: [String]
    var policies: [String]
    var budgets: [String]
    var contexts: [Int]
    var depths: [Double]
    var seeds: [Int]
    var needleContexts: [Int]
    var perplexityTokens: Int
    var perplexityBudgets: [String]? = nil
    var needleKeys: Int? = nil
    var model: String           // model file name and SHA-256
    var text: String            // the perplexity text's package, version and SHA-256
}

/// Everything one evaluation produced: `results.json` in the output folder.
struct EvalRun: Codable, Sendable, Equatable {
    var version = 1
    var commit: String
    var date: String
    var command: String
    var machine: EvalMachine
    var settings: EvalSettings
    var cells: [EvalCell]
    /// llama.cpp's `llama-bench` rows measured in the same run (empty without KVBENCH_LLAMA_BENCH).
    var llamaBench: [EvalLlamaRow] = []

    /// JSON with non-finite numbers written as the strings "nan", "inf" and "-inf" (a perplexity
    /// can overflow), sorted keys, indented.
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    /// The matching decoder.
    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }
}

/// One `llama-bench` measurement next to KVCompress's in the same run.
struct EvalLlamaRow: Codable, Sendable, Equatable {
    var test: String            // e.g. "pp512", "tg64 @ d2048"
    var flashAttention: Bool
    var threads: Int
    var llamaTokensPerSecond: Double
    var kvcompressTokensPerSecond: Double
}
