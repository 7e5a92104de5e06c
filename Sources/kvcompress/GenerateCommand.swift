import Foundation
import KVCompress
import KVModel

/// `kvcompress generate`: streams a continuation and ends with a stats line.
enum GenerateCommand {
    static let usage = """
    kvcompress generate --prompt TEXT [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]
                        [--seed S] [--ignore-eos] [--profile] [session options]

    Streams the continuation of TEXT to stdout, then a stats line on stderr (prefill and decode
    tok/s, why generation stopped, cache bytes at the end and at the peak). Greedy unless
    --temperature > 0. Without a policy that re-positions keys, generation stops at the model's
    context length (stop reason contextFull) and keeps what it generated.

      --prompt TEXT         the prompt (not empty)
      --max-tokens N        tokens to generate, >= 1 (default 64)
      --temperature T       0 = greedy (default 0); --top-k K >= 0 (default 40, 0 = no limit);
                            --top-p P in (0, 1] (default 0.95)
      --seed S              sampling seed, an integer in 0...2^64-1 (default 0)
      --ignore-eos          do not stop at the end-of-sequence token (for long streaming runs)
      --profile             after the stats line, where a decode step's time goes: microseconds
                            per step for each phase (projections, attention and policy, norms,
                            logits, ...) and the read rate of the weight matrices

    With --policy Finch, a prompt "CONTEXT<|finch_sep|>QUESTION" (kvpress's delimiter) makes the
    question the window that votes (the delimiter itself is dropped); without it, the last 64 tokens.
    \(SessionOptions.usage)
    """

    static func run(_ arguments: ArraySlice<String>) throws {
        let o = try CommandLineOptions(
            arguments,
            valued: SessionOptions.valued.union(["--prompt", "--max-tokens", "--temperature", "--top-k", "--top-p", "--seed"]),
            boolean: SessionOptions.boolean.union(["--ignore-eos", "--profile"]))
        if o.wantsHelp { print(usage); return }
        guard let prompt = o.string("--prompt") else {
            throw CommandLineOptions.UsageError(description: "generate needs --prompt TEXT")
        }
        guard !prompt.isEmpty else {
            throw CommandLineOptions.UsageError(description: "--prompt is empty: give the text to continue")
        }
        let maxTokens = try o.int("--max-tokens", default: 64, in: 1...Int(Int32.max))
        let temperature = try o.double("--temperature", default: 0, expected: "a number >= 0 (0 = greedy)") { $0 >= 0 }
        let topK = try o.int("--top-k", default: 40, in: 0...Int(Int32.max), expected: "an integer >= 0 (0 = no limit)")
        let topP = try o.double("--top-p", default: 0.95, expected: "a number in (0, 1]") { $0 > 0 && $0 <= 1 }
        let sampling = try SamplingParameters(temperature: Float(temperature), topK: topK, topP: Float(topP),
                                              seed: try o.uint64("--seed", default: 0))
        let options = try SessionOptions(o)
        var session = try options.makeSession()
        var ids = try session.model.tokenizer.encode(prompt)
        if prompt.contains(Finch.delimiter) {
            // FINCH's question: the tokens after the delimiter, which leaves the sequence.
            guard let finch = options.policy as? KeyRerotation<Finch> else {
                throw CommandLineOptions.UsageError(description: "the prompt holds \(Finch.delimiter), FINCH's delimiter between "
                    + "context and question, which only --policy Finch reads (it is not a token of the model)")
            }
            let question: Int
            (ids, question) = try session.model.tokenizer.encode(prompt, questionAfter: Finch.delimiter)
            let policy = KeyRerotation(base: try Finch(budget: finch.base.selector.budget, questionTokens: question,
                                                       schedule: finch.base.schedule))
            session = try options.makeSession(model: session.model, policy: policy)
        }
        let stops: Set<Int32>? = o.has("--ignore-eos") ? [] : nil
        if o.has("--profile") { session.stepProfile = DecodeStepProfile() }
        let result = try session.generate(promptTokens: ids, maxTokens: maxTokens, sampling: sampling, stopTokens: stops) { piece in
            FileHandle.standardOutput.write(Data(piece.utf8))
        }
        print()
        let stats = String(format: "[prompt %d tok, prefill %.1f tok/s | generated %d tok (%@), decode %.1f tok/s | cache %d bytes, peak %d bytes | %@]",
                           result.promptTokens, result.prefillTokensPerSecond, result.tokens.count,
                           result.stopReason.rawValue, result.decodeTokensPerSecond, result.cacheBytes,
                           result.peakCacheBytes, options.description(of: session))
        FileHandle.standardError.write(Data((stats + "\n").utf8))
        if let profile = session.stepProfile {
            FileHandle.standardError.write(Data((profile.report + "\n").utf8))
        }
    }
}
