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
    ///
    /// Keys that are present must have the right type (strings for `tokens`, `merges` and `pre`,
    /// integers for `token_type` and the special-token ids, a bool for `add_bos_token`), and the
    /// special-token ids must name vocabulary tokens; absent optional keys take llama.cpp's
    /// defaults (BOS 1, EOS 2, no BOS added, the `gpt2` pre-tokenizer).
    /// - Throws: `KVError.unsupportedModel` for a non-gpt2 tokenizer or missing keys,
    ///   `.malformedFile` (naming the key and its byte offset) for a key of the wrong type or a
    ///   special-token id outside the vocabulary, `.tokenization` for inconsistent merges.
    public init(gguf: GGUFFile) throws(KVError) {
        let model = try gguf.string("tokenizer.ggml.model")
        guard model == "gpt2" else {
            throw .unsupportedModel("tokenizer model '\(model)' is not supported (byte-level BPE 'gpt2' is)")
        }
        let tokens = try Self.strings(gguf, "tokenizer.ggml.tokens")
        guard !tokens.isEmpty else {
            throw .unsupportedModel("\(gguf.path): metadata key 'tokenizer.ggml.tokens' holds an empty vocabulary")
        }
        let types = gguf.value("tokenizer.ggml.token_type") == nil ? nil : try Self.ints(gguf, "tokenizer.ggml.token_type")
        let merges = try Self.strings(gguf, "tokenizer.ggml.merges")
        let preName = try Self.optional(gguf, "tokenizer.ggml.pre", "a string") { $0.stringValue } ?? "gpt2"
        let addBOS = try Self.optional(gguf, "tokenizer.ggml.add_bos_token", "a bool") { v -> Bool? in
            if case .bool(let b) = v { return b }
            return nil
        } ?? false
        try self.init(tokens: tokens, tokenTypes: types, merges: merges,
                      bos: try Self.specialTokenID(gguf, "tokenizer.ggml.bos_token_id", default: 1,
                                                   role: "beginning-of-sequence", vocabularySize: tokens.count),
                      eos: try Self.specialTokenID(gguf, "tokenizer.ggml.eos_token_id", default: 2,
                                                   role: "end-of-sequence", vocabularySize: tokens.count),
                      addBOS: addBOS, splitDigits: Self.digitSplitting.contains(preName))
    }

    /// A present key whose value is not what the tokenizer reads.
    private static func wrongType(_ gguf: GGUFFile, _ key: String, _ value: GGUFValue, _ expected: String) -> KVError {
        .malformedFile(path: gguf.path, field: key, offset: gguf.valueOffset(key) ?? 0,
                       reason: "the value has type \(value.typeName), expected \(expected); "
                           + "fix the key's type or re-convert the model")
    }

    /// The value of an optional key, converted by `convert`; nil when the key is absent.
    private static func optional<T>(_ gguf: GGUFFile, _ key: String, _ expected: String,
                                    _ convert: (GGUFValue) -> T?) throws(KVError) -> T? {
        guard let v = gguf.value(key) else { return nil }
        guard let converted = convert(v) else { throw wrongType(gguf, key, v, expected) }
        return converted
    }

    /// A required array of strings.
    private static func strings(_ gguf: GGUFFile, _ key: String) throws(KVError) -> [String] {
        let array = try gguf.array(key)
        var out: [String] = []
        out.reserveCapacity(array.count)
        for e in array {
            guard let s = e.stringValue else { throw wrongType(gguf, key, .array(array), "an array of strings") }
            out.append(s)
        }
        return out
    }

    /// A required array of integers.
    private static func ints(_ gguf: GGUFFile, _ key: String) throws(KVError) -> [Int] {
        let array = try gguf.array(key)
        var out: [Int] = []
        out.reserveCapacity(array.count)
        for e in array {
            guard let i = e.intValue else { throw wrongType(gguf, key, .array(array), "an array of integers") }
            out.append(i)
        }
        return out
    }

    /// A special-token id: the key's integer value (or `defaultID` when absent), which must name a
    /// vocabulary token.
    private static func specialTokenID(_ gguf: GGUFFile, _ key: String, default defaultID: Int32, role: String,
                                       vocabularySize: Int) throws(KVError) -> Int32 {
        guard let v = gguf.value(key) else {
            guard Int(defaultID) < vocabularySize else {
                throw .unsupportedModel("\(gguf.path): metadata key '\(key)' is absent and its default id "
                    + "\(defaultID) lies outside the vocabulary of \(vocabularySize) tokens; add the key "
                    + "with the id of the model's \(role) token")
            }
            return defaultID
        }
        let id: Int
        let description: String
        if case .uint64(let u) = v, u > UInt64(Int.max) {
            (id, description) = (Int.max, "\(u)")  // reported as out of range below
        } else {
            guard let i = v.intValue else { throw wrongType(gguf, key, v, "an integer token id") }
            (id, description) = (i, "\(i)")
        }
        guard id >= 0 && id < vocabularySize else {
            throw .malformedFile(path: gguf.path, field: key, offset: gguf.valueOffset(key) ?? 0,
                                 reason: "token id \(description) is outside the vocabulary of \(vocabularySize) "
                                     + "tokens (ids 0..<\(vocabularySize)); set it to the id of the model's "
                                     + "\(role) token or re-convert the model")
        }
        return Int32(id)
    }

    /// Builds the tokenizer from its parts (vocabulary strings in byte-level form, merges as
    /// `"left right"`, GGUF token types: 3 = control, 4 = user-defined are special).
    /// - Throws: `KVError.unsupportedModel` for an empty vocabulary or one of 2^31 tokens or more,
    ///   `.invalidParameter` when `bos` or `eos` is not a vocabulary id, `.tokenization` for a merge
    ///   that does not combine two vocabulary tokens into one or a vocabulary without byte tokens.
    public init(tokens: [String], tokenTypes: [Int]?, merges: [String], bos: Int32, eos: Int32,
                addBOS: Bool, splitDigits: Bool) throws(KVError) {
        guard !tokens.isEmpty else { throw .unsupportedModel("empty vocabulary") }
        guard tokens.count <= Int(Int32.max), merges.count <= Int(Int32.max) else {
            throw .unsupportedModel("\(tokens.count) tokens and \(merges.count) merges: token ids and merge ranks "
                + "must fit in Int32")
        }
        for (name, id) in [("bos", bos), ("eos", eos)] where id < 0 || Int(id) >= tokens.count {
            throw .invalidParameter(name: name, value: "\(id)",
                                    expected: "a token id in 0..<\(tokens.count) (the vocabulary size)")
        }
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

    /// Encodes `context + delimiter + question` as kvpress's FINCH reads such a prompt: the ids of
    /// the context and of the question side by side, without the delimiter (as if it were a
    /// special token dropped from the sequence), and the question's length in tokens (what
    /// `Finch(budget:questionTokens:)` takes).
    /// - Parameter delimiter: the separator (kvpress's is `Finch.delimiter`, `<|finch_sep|>`).
    /// - Throws: `KVError.invalidParameter` unless `text` holds the delimiter exactly once with a
    ///   question after it.
    public func encode(_ text: String, questionAfter delimiter: String) throws(KVError)
        -> (ids: [Int32], questionTokens: Int) {
        let parts = text.split(separator: delimiter, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw .invalidParameter(name: "prompt", value: "\(parts.count - 1) occurrences of \(delimiter)",
                                    expected: "exactly one \(delimiter) between the context and the question")
        }
        var question = try encode(String(parts[1]))
        if addsBOS { question.removeFirst() }
        guard !question.isEmpty else {
            throw .invalidParameter(name: "prompt", value: "nothing after \(delimiter)", expected: "the question after \(delimiter)")
        }
        return (try encode(String(parts[0])) + question, question.count)
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
    ///
    /// - Complexity: O(*n* log *n*) for *n* bytes: candidate pairs wait in a min-heap ordered by
    ///   (rank, position) and symbols form a linked list, so a long piece (a run of thousands of
    ///   letters) does not rescan every pair after each merge.
    private func bpe(_ bytes: [UInt8]) -> [Int32] {
        var symbols = bytes.map { byteToken[Int($0)] }.filter { $0 >= 0 }
        guard symbols.count > 1 else { return symbols }
        let n = symbols.count
        // Linked list over the symbol slots; a merged-away slot is marked dead (`next[i] == -2`).
        var next = Array(1...n)
        next[n - 1] = -1
        var prev = Array(-1..<(n - 1))
        var heap = PairHeap()
        func push(_ left: Int) {
            let right = next[left]
            guard right >= 0 else { return }
            let key = UInt64(UInt32(symbols[left])) << 32 | UInt64(UInt32(symbols[right]))
            if let rank = ranks[key] {
                heap.push(.init(rank: rank, left: Int32(left), leftID: symbols[left], rightID: symbols[right]))
            }
        }
        for i in 0..<(n - 1) { push(i) }
        while let pair = heap.pop() {
            let left = Int(pair.left)
            let right = next[left]
            // Stale: the left slot was merged away or changed, or its right neighbour changed.
            guard right >= 0, symbols[left] == pair.leftID, symbols[right] == pair.rightID else { continue }
            let key = UInt64(UInt32(pair.leftID)) << 32 | UInt64(UInt32(pair.rightID))
            symbols[left] = merged[key]!
            next[left] = next[right]
            if next[right] >= 0 { prev[next[right]] = left }
            next[right] = -2
            if prev[left] >= 0 { push(prev[left]) }
            push(left)
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var i = 0
        while i >= 0 {
            out.append(symbols[i])
            i = next[i]
        }
        return out
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
    /// Out-of-range ids decode to nothing (use ``decode(validating:)`` to reject them).
    public func decode(_ ids: [Int32]) -> String {
        String(decoding: ids.flatMap { bytes(of: $0) }, as: UTF8.self)
    }

    /// Decodes ids to text like ``decode(_:)``, but rejects ids outside the vocabulary.
    /// - Throws: `KVError.tokenization` naming the first id outside `0..<vocabularySize` and its index.
    public func decode(validating ids: [Int32]) throws(KVError) -> String {
        if let i = ids.firstIndex(where: { $0 < 0 || Int($0) >= tokens.count }) {
            throw .tokenization("token id \(ids[i]) at index \(i) is outside the vocabulary "
                + "(ids 0..<\(tokens.count)); pass ids produced by this model's tokenizer")
        }
        return decode(ids)
    }

    /// A decoder for streamed output that holds back incomplete UTF-8 sequences.
    public func makeStreamingDecoder() -> StreamingDecoder { StreamingDecoder(tokenizer: self) }
}

/// A binary min-heap of candidate merges for ``Tokenizer``'s BPE, ordered by rank, then by the
/// left symbol's position (leftmost first, as the quadratic reference algorithm merges).
struct PairHeap {
    struct Pair {
        var rank: Int32
        var left: Int32
        var leftID: Int32
        var rightID: Int32

        func precedes(_ other: Pair) -> Bool {
            rank != other.rank ? rank < other.rank : left < other.left
        }
    }

    private var items: [Pair] = []

    mutating func push(_ pair: Pair) {
        items.append(pair)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].precedes(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Pair? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].precedes(items[m]) { m = l }
                if r < items.count && items[r].precedes(items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
