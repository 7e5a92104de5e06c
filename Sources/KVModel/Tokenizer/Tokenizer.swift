import KVCore

/// Byte-level BPE tokenizer (GPT-2 family: `tokenizer.ggml.model == "gpt2"`) built from GGUF
/// metadata: vocabulary, merges, token types, pre-tokenizer name and special token ids.
///
/// Encoding splits out special tokens (control and user-defined token types) when asked, splits
/// the rest with the model's pre-tokenizer, maps each piece's UTF-8 bytes to vocabulary characters
/// and applies merges by rank. Decoding is exact: `decode(encode(s)) == s` for any string whose
/// bytes all have vocabulary tokens (bytes without one are dropped when encoding).
public struct Tokenizer: Sendable {
    /// Vocabulary strings, indexed by token id.
    public let tokens: [String]
    /// Beginning-of-sequence id.
    public let bosTokenID: Int32
    /// End-of-sequence id (stops generation by default).
    public let eosTokenID: Int32
    /// Whether BOS is prepended when encoding (`tokenizer.ggml.add_bos_token`).
    public let addsBOS: Bool

    private let ids: [String: Int32]
    private let ranks: [UInt64: Int32]  // (left id << 32 | right id) -> rank
    private let merged: [UInt64: Int32]  // (left id << 32 | right id) -> merged id
    private let byteToken: [Int32]       // id of each byte's single-character token
    private let specials: [(text: [UInt8], id: Int32)]  // longest first
    private let isSpecial: [Bool]
    private let pre: PreTokenizer

    /// Pre-tokenizers with individual digit splitting, by `tokenizer.ggml.pre` name.
    static let digitSplitting: Set<String> = ["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"]

    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    /// - Throws: `KVError.unsupportedModel` for a non-gpt2 tokenizer or missing keys,
    ///   `.tokenization` for inconsistent merges.
    public init(gguf: GGUFFile) throws(KVError) {
        let model = try gguf.string("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw .unsupportedModel("tokenizer model '\(model)' is not supported (byte-level BPE 'gpt2' is)")
        }
        let tokens = try gguf.array("tokenizer.ggml.tokens").map { $0.stringValue ?? "" }
        let types = (try? gguf.array("tokenizer.ggml.token_type"))?.map { $0.intValue ?? 1 }
        let merges = try gguf.array("tokenizer.ggml.merges").map { $0.stringValue ?? "" }
        let preName = (try? gguf.string("tokenizer.ggml.pre")) ?? "gpt2"
        try self.init(tokens: tokens, tokenTypes: types, merges: merges,
                      bos: Int32((try? gguf.int("tokenizer.ggml.bos_token_id")) ?? 1),
                      eos: Int32((try? gguf.int("tokenizer.ggml.eos_token_id")) ?? 2),
                      addBOS: (gguf.value("tokenizer.ggml.add_bos_token").map { $0 == .bool(true) }) ?? false,
                      splitDigits: Self.digitSplitting.contains(preName))
    }

    /// Builds the tokenizer from its parts (vocabulary strings in byte-level form, merges as
    /// `"left right"`, GGUF token types: 3 = control, 4 = user-defined are special).
    public init(tokens: [String], tokenTypes: [Int]?, merges: [String], bos: Int32, eos: Int32,
                addBOS: Bool, splitDigits: Bool) throws(KVError) {
        guard !tokens.isEmpty else { throw .unsupportedModel("empty vocabulary") }
        self.tokens = tokens
        self.bosTokenID = bos
        self.eosTokenID = eos
        self.addsBOS = addBOS
        self.pre = PreTokenizer(splitDigits: splitDigits)
        var ids: [String: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        self.ids = ids
        var ranks: [UInt64: Int32] = [:]
        var merged: [UInt64: Int32] = [:]
        ranks.reserveCapacity(merges.count)
        for (rank, m) in merges.enumerated() {
            let parts = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let l = ids[String(parts[0])], let r = ids[String(parts[1])],
                  let result = ids[String(parts[0]) + String(parts[1])] else {
                throw .tokenization("merge #\(rank) '\(m)' does not combine two vocabulary tokens into one")
            }
            let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
            if ranks[key] == nil {
                ranks[key] = Int32(rank)
                merged[key] = result
            }
        }
        self.ranks = ranks
        self.merged = merged
        // Vocabularies may lack tokens for bytes that never occur in their training text (SmolLM2
        // lacks 21: a few C0 controls and bytes that cannot appear in UTF-8); such bytes are dropped
        // when encoding, as Hugging Face's BPE does without an unknown token.
        let byteToken = (0..<256).map { ids[String(ByteLevel.scalar[$0])] ?? -1 }
        guard byteToken.contains(where: { $0 >= 0 }) else {
            throw .tokenization("the vocabulary has no byte-level tokens; is this a gpt2-style BPE vocabulary?")
        }
        self.byteToken = byteToken
        var special = [Bool](repeating: false, count: tokens.count)
        var specials: [(text: [UInt8], id: Int32)] = []
        if let tokenTypes {
            for (i, t) in tokenTypes.enumerated() where i < tokens.count && (t == 3 || t == 4) {
                special[i] = true
                if !tokens[i].isEmpty { specials.append((Array(tokens[i].utf8), Int32(i))) }
            }
        }
        self.isSpecial = special
        self.specials = specials.sorted { $0.text.count > $1.text.count }
    }

    /// Vocabulary size.
    public var vocabularySize: Int { tokens.count }

    /// Encodes `text`. With `parseSpecial`, occurrences of special tokens' text (for example
    /// `<|im_start|>`) become those tokens; otherwise they are encoded as plain text.
    /// BOS is prepended when the model asks for it (``addsBOS``).
    public func encode(_ text: String, parseSpecial: Bool = true) throws(KVError) -> [Int32] {
        var out: [Int32] = addsBOS ? [bosTokenID] : []
        var cache: [String: [Int32]] = [:]
        for segment in parseSpecial ? splitSpecial(text) : [(text[...], nil)] {
            if let id = segment.1 { out.append(id); continue }
            for piece in pre.split(String(segment.0)).map(String.init) {
                if let hit = cache[piece] { out += hit; continue }
                let encoded = bpe(Array(piece.utf8))
                cache[piece] = encoded
                out += encoded
            }
        }
        return out
    }

    /// Splits `text` around special-token occurrences (leftmost, longest first).
    private func splitSpecial(_ text: String) -> [(Substring, Int32?)] {
        guard !specials.isEmpty else { return [(text[...], nil)] }
        let bytes = Array(text.utf8)
        var result: [(Substring, Int32?)] = []
        var plainStart = 0
        var i = 0
        let utf8 = text.utf8
        func sub(_ a: Int, _ b: Int) -> Substring {
            text[utf8.index(utf8.startIndex, offsetBy: a)..<utf8.index(utf8.startIndex, offsetBy: b)]
        }
        while i < bytes.count {
            if let hit = specials.first(where: { s in
                s.text.first == bytes[i] && s.text.count <= bytes.count - i
                    && bytes[i..<(i + s.text.count)].elementsEqual(s.text)
            }) {
                if plainStart < i { result.append((sub(plainStart, i), nil)) }
                result.append((sub(i, i + hit.text.count), hit.id))
                i += hit.text.count
                plainStart = i
            } else {
                i += 1
            }
        }
        if plainStart < bytes.count { result.append((sub(plainStart, bytes.count), nil)) }
        return result
    }

    /// Byte-level BPE of one piece: start from single bytes, repeatedly merge the adjacent pair
    /// of lowest rank (leftmost on equal ranks).
    private func bpe(_ bytes: [UInt8]) -> [Int32] {
        var symbols = bytes.map { byteToken[Int($0)] }.filter { $0 >= 0 }
        while symbols.count > 1 {
            var best = Int32.max
            var at = -1
            for j in 0..<(symbols.count - 1) {
                let key = UInt64(UInt32(symbols[j])) << 32 | UInt64(UInt32(symbols[j + 1]))
                if let r = ranks[key], r < best {
                    best = r
                    at = j
                }
            }
            if at < 0 { break }
            let key = UInt64(UInt32(symbols[at])) << 32 | UInt64(UInt32(symbols[at + 1]))
            symbols[at] = merged[key]!
            symbols.remove(at: at + 1)
        }
        return symbols
    }

    /// The raw bytes a token stands for (special tokens: their text).
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0 && Int(id) < tokens.count else { return [] }
        let t = tokens[Int(id)]
        if isSpecial[Int(id)] { return Array(t.utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(t.unicodeScalars.count)
        for s in t.unicodeScalars {
            if let b = ByteLevel.byte[s] { out.append(b) } else { out += Array(String(s).utf8) }
        }
        return out
    }

    /// Decodes ids to text; byte sequences that are not valid UTF-8 become U+FFFD.
    /// Out-of-range ids decode to nothing.
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: ids.flatMap { bytes(of: $0) }, as: UTF8.self)
    }

    /// A decoder for streamed output that holds back incomplete UTF-8 sequences.
    public func makeStreamingDecoder() -> StreamingDecoder { StreamingDecoder(tokenizer: self) }
}
