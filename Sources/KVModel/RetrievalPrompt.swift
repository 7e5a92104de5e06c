import KVCore

/// A retrieval prompt of the evaluation, generated deterministically from a seed: filler
/// sentences (chosen and ordered by the seed) around one or several "pass keys", then a question
/// whose answer is one of them.
///
/// - passkey (Mohtashami & Jaggi, "Landmark Attention", 2023): one key at a relative depth.
/// - needle (multi-key needle in a haystack, as in RULER's multi-key NIAH): several keys for
///   differently named doors at seeded depths; the question asks for one of them.
///
/// The model answers by continuing the question; a trial is correct when the greedy answer
/// contains the expected digits.
public struct RetrievalPrompt: Sendable {
    /// Token ids (instruction, filler, keys, question), at most the requested context length and
    /// short of it by less than one filler sentence.
    public let ids: [Int32]
    /// The expected key (five digits).
    public let expected: String
    /// Where the asked key sits, as a fraction of the filler (0: start, 1: end).
    public let depth: Double

    /// The instruction that opens every prompt.
    public static let instruction = "There is an important info hidden inside a lot of irrelevant text. "
        + "Find it and memorize it. I will quiz you about the important information there.\n"

    /// The filler vocabulary; the seed picks the sequence.
    public static let fillerSentences = [
        "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.",
        "The river runs to the sea.", "Birds sing in the morning.", "The road is long and quiet.",
        "Clouds drift over the hills.", "The wind moves the trees.", "Rain falls on the town.", "The night is calm.",
    ]

    /// The names of the doors the needle task's keys belong to.
    public static let doors = ["red", "blue", "green", "yellow", "white", "black", "silver", "golden"]

    /// A single-key prompt of about `context` tokens with the key at `depth` (in `0...1`).
    /// - Throws: `KVError.tokenization` if the tokenizer fails.
    public static func passkey(tokenizer: Tokenizer, context: Int, depth: Double, seed: UInt64) throws(KVError) -> RetrievalPrompt {
        var rng = SeededGenerator(seed: seed &* 0x9E37_79B9 &+ UInt64(context))
        let key = String(Int.random(in: 10_000...99_999, using: &rng))
        let needle = "\nThe pass key is \(key). Remember it. \(key) is the pass key.\n"
        let question = "\nWhat is the pass key? The pass key is"
        return try build(tokenizer: tokenizer, context: context, needles: [(needle, depth)], question: question,
                         expected: key, depth: depth, rng: &rng)
    }

    /// A prompt of about `context` tokens with `keys` keys (one per door, at most
    /// `doors.count`) at seeded depths; the question asks for one of them.
    /// - Throws: `KVError.invalidParameter` for a key count outside `1...doors.count`;
    ///   `.tokenization` if the tokenizer fails.
    public static func needle(tokenizer: Tokenizer, context: Int, keys: Int, seed: UInt64) throws(KVError) -> RetrievalPrompt {
        guard keys >= 1 && keys <= doors.count else {
            throw .invalidParameter(name: "keys", value: "\(keys)", expected: "1...\(doors.count)")
        }
        var rng = SeededGenerator(seed: seed &* 0xC2B2_AE35 &+ UInt64(context) &+ 7)
        let doors = Array(Self.doors.shuffled(using: &rng).prefix(keys))
        // An array, not a Set: a Set's order changes from process to process.
        var keyValues: [String] = []
        while keyValues.count < keys {
            let key = String(Int.random(in: 10_000...99_999, using: &rng))
            if !keyValues.contains(key) { keyValues.append(key) }
        }
        let needles = zip(doors, keyValues).map { door, key in
            ("\nThe pass key for the \(door) door is \(key). Remember it.\n", Double.random(in: 0...1, using: &rng))
        }
        let asked = Int.random(in: 0..<keys, using: &rng)
        let question = "\nWhat is the pass key for the \(doors[asked]) door? The pass key for the \(doors[asked]) door is"
        return try build(tokenizer: tokenizer, context: context, needles: needles, question: question,
                         expected: keyValues[asked], depth: needles[asked].1, rng: &rng)
    }

    /// Instruction, filler with the needles inserted at their depths, question: as many filler
    /// sentences as fit `context` tokens.
    private static func build(tokenizer: Tokenizer, context: Int, needles: [(String, Double)], question: String,
                              expected: String, depth: Double, rng: inout SeededGenerator) throws(KVError) -> RetrievalPrompt {
        func count(_ text: String) throws(KVError) -> Int { try tokenizer.encode(text, parseSpecial: false).count }
        var fixed = try count(instruction) + (try count(question))
        for needle in needles { fixed += try count(needle.0) }
        var sentenceTokens: [Int] = []
        for sentence in fillerSentences { sentenceTokens.append(try count(" " + sentence)) }
        var filler: [String] = []
        var used = fixed
        var last = -1
        while true {
            var pick = Int.random(in: 0..<fillerSentences.count, using: &rng)
            if pick == last { pick = (pick + 1) % fillerSentences.count }
            guard used + sentenceTokens[pick] <= context else { break }
            filler.append(" " + fillerSentences[pick])
            used += sentenceTokens[pick]
            last = pick
        }
        // Needles after round(depth x fillers) sentences, in order of depth.
        let placed = needles.map { (text: $0.0, slot: Int((Double(filler.count) * $0.1).rounded())) }
            .sorted { $0.slot < $1.slot }
        var text = instruction
        var next = 0
        for (i, sentence) in filler.enumerated() {
            while next < placed.count && placed[next].slot == i { text += placed[next].text; next += 1 }
            text += sentence
        }
        while next < placed.count { text += placed[next].text; next += 1 }
        text += question
        return RetrievalPrompt(ids: try tokenizer.encode(text, parseSpecial: false), expected: expected, depth: depth)
    }
}
