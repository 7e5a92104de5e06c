import Foundation
import KVCompress
import KVModel

/// `kvcompress perplexity`: teacher-forced perplexity of a text file under a policy.
enum PerplexityCommand {
    static let usage = """
    kvcompress perplexity --text FILE [--max-tokens N] [session options]

    Teacher-forced perplexity of a UTF-8 text (token ids from the tokenizer, no special tokens
    added): exp of the mean negative log-likelihood of tokens 1..N-1, each given every token before
    it that the cache still holds. The text is fed in chunks of --chunk tokens, each chunk a prompt
    of its own: the policy compresses after every chunk and the next chunk is scored against the
    compressed cache. Prints the perplexity, the token count, the peak cache bytes and tok/s on
    stdout, progress on stderr. A policy that bounds the cache and re-positions keys
    (--policy StreamingLLM --window W --reposition) runs past the model's context length; otherwise
    scoring stops before it (said on stderr).

      --text FILE           the text (UTF-8, not empty)
      --max-tokens N        score only the first N tokens, N >= 2 (default: the whole text)
    \(SessionOptions.usage)
    """

    static func run(_ arguments: ArraySlice<String>) throws {
        let o = try CommandLineOptions(arguments, valued: SessionOptions.valued.union(["--text", "--max-tokens"]),
                                       boolean: SessionOptions.boolean)
        if o.wantsHelp { print(usage); return }
        guard let path = o.string("--text") else {
            throw CommandLineOptions.UsageError(description: "perplexity needs --text FILE")
        }
        let maxTokens = o.string("--max-tokens") == nil ? nil : try o.int("--max-tokens", default: 0, in: 2...Int.max)
        let options = try SessionOptions(o)
        let text = try readText(path)
        let session = try options.makeSession()
        var ids = try session.model.tokenizer.encode(text, parseSpecial: false)
        if session.model.tokenizer.addsBOS, ids.first == session.model.tokenizer.bosTokenID { ids.removeFirst() }
        guard ids.count >= 2 else {
            throw CommandLineOptions.UsageError(description: "--text \(path) holds \(ids.count) token(s); perplexity needs at least 2")
        }
        var progress = ProgressLine(label: "perplexity")
        let r = try session.perplexity(tokens: ids, maxTokens: maxTokens) { done, total in
            progress.update(done: done, total: total, unit: "tok")
        }
        if r.stoppedAtContextLength {
            FileHandle.standardError.write(Data(("kvcompress: stopped after \(r.tokens) tokens: the next chunk would reach the model's "
                + "context length \(session.model.config.contextLength) (use a policy that re-positions keys, e.g. "
                + "--policy StreamingLLM --window 1020 --reposition, to go on)\n").utf8))
        }
        print(String(format: "perplexity %.4f | mean NLL %.5f nats | tokens %d (%d scored) | peak cache %d bytes | final cache %d bytes | %.1f tok/s | %@",
                     r.perplexity, r.meanNegativeLogLikelihood, r.tokens, r.scoredTokens, r.peakCacheBytes,
                     r.finalCacheBytes, r.tokensPerSecond, options.description(of: session)))
    }

    /// The file's text; not empty, valid UTF-8.
    static func readText(_ path: String) throws -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw KVError.io(path: path, reason: error.localizedDescription)
        }
        guard !data.isEmpty else {
            throw CommandLineOptions.UsageError(description: "--text \(path) is empty")
        }
        let bytes = [UInt8](data)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw KVError.malformedFile(path: path, field: "text", offset: firstInvalidUTF8(bytes),
                                        reason: "not valid UTF-8; give a UTF-8 text file")
        }
        return text
    }

    /// The offset of the first byte that does not start a valid UTF-8 sequence.
    static func firstInvalidUTF8(_ b: [UInt8]) -> Int {
        var i = 0
        while i < b.count {
            let n: Int
            switch b[i] {
            case 0x00..<0x80: n = 1
            case 0xC2...0xDF: n = 2
            case 0xE0...0xEF: n = 3
            case 0xF0...0xF4: n = 4
            default: return i
            }
            guard i + n <= b.count, String(validating: b[i..<(i + n)], as: UTF8.self) != nil else { return i }
            i += n
        }
        return i
    }
}
