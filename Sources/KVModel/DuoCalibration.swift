import KVCompress
import KVCore

/// Estimates a DuoAttention pattern for a model on a CPU (`kvcompress calibrate duo`), without
/// gradients: the reference trains one gate per (layer, KV head) to minimize the distillation loss
/// on the final hidden states at the answer tokens of synthetic multi-passkey data plus an L1
/// penalty on the gates; here each head's gate is the same distillation loss measured with that
/// head alone made streaming (Λ-shaped attention, ``DuoAttention`` with explicit retrieval heads),
/// averaged over the samples and divided by the largest, so it lies in `[0, 1]` and ranks heads
/// as the loss they cause when they stream (the L1 term is the same for every head and drops out of
/// the ranking; deployment only uses the ranking, through a quantile).
///
/// Data, after the reference's `MultiplePasskeyRetrievalDataset` at the scale of a small model: a
/// haystack of seeded sentences (not the evaluation's filler), `keys` passkeys of `words` random
/// NATO-alphabet words at sorted seeded depths in `[0.05, 0.95]`, then a question and its answer
/// for each key (teacher-forced); the loss is taken on the rows that predict the answer words.
/// Contexts default to 1000-2500 tokens (the reference: 1000-32000 on long-context models).
/// Cost: `samples x (1 + layers x kvHeads)` prefills (91 per sample on the default model).
public struct DuoCalibration: Sendable {
    /// Context length of each sample, in tokens (approximate: whole sentences).
    public var contexts = [1000, 1500, 2000, 2500]
    /// Passkeys per sample.
    public var keys = 4
    /// Words per passkey.
    public var words = 8
    /// Sinks a streaming head keeps.
    public var sinkSize = 64
    /// Recent tokens a streaming head keeps.
    public var recentSize = 256
    /// Seed of the samples.
    public var seed: UInt64 = 0

    /// The defaults.
    public init() {}

    static let nato = ["alfa", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
                       "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
                       "uniform", "victor", "whiskey", "xray", "yankee", "zulu"]
    static let haystack = [
        "The old library kept its maps in a cedar chest.", "A ferry crossed the bay twice every morning.",
        "Farmers planted barley on the southern slopes.", "The committee met on the first Tuesday of the month.",
        "Copper wires ran along the length of the tunnel.", "Children learned to skate on the frozen pond.",
        "The baker sold out of rye bread by noon.", "A lighthouse stood at the end of the rocky point.",
        "The museum added a wing for ancient pottery.", "Trains were delayed by snow in the mountain pass.",
        "The orchestra tuned their instruments before the concert.", "Bees gathered pollen from the clover fields.",
        "The carpenter measured each board twice.", "Lanterns lit the narrow streets of the harbor town.",
        "A new bridge was built across the river in spring.", "The students wrote essays about the industrial age.",
    ]

    /// One sample: token ids and the rows whose hidden states predict the answer words.
    struct Sample {
        let ids: [Int32]
        let rows: [Int]
    }

    func samples(tokenizer: Tokenizer) throws(KVError) -> [Sample] {
        var rng = SeededGenerator(seed: seed)
        func encode(_ text: String) throws(KVError) -> [Int32] {
            let ids = try tokenizer.encode(text)
            return tokenizer.addsBOS ? Array(ids.dropFirst()) : ids
        }
        let sentences = try Self.haystack.map { (s: String) throws(KVError) in try encode(" " + s) }
        let instruction = try encode("Several pass keys are hidden in the text below. Memorize each of them.\n")
        return try contexts.map { (context: Int) throws(KVError) -> Sample in
            let passkeys = (0..<keys).map { _ in (0..<words).map { _ in Self.nato.randomElement(using: &rng)! }.joined(separator: " ") }
            var filler: [[Int32]] = []
            var length = instruction.count
            while length < context {
                let s = sentences.randomElement(using: &rng)!
                filler.append(s)
                length += s.count
            }
            let depths = (0..<keys).map { _ in Double.random(in: 0.05...0.95, using: &rng) }.sorted()
            var ids = [tokenizer.bosTokenID] + instruction
            var next = 0
            for (i, s) in filler.enumerated() {
                while next < keys && Double(i) >= depths[next] * Double(filler.count) {
                    ids += try encode(" The pass key number \(next + 1) is \(passkeys[next]). Remember it.")
                    next += 1
                }
                ids += s
            }
            var rows: [Int] = []
            for (i, key) in passkeys.enumerated() {
                ids += try encode("\nWhat is the pass key number \(i + 1)? The pass key number \(i + 1) is")
                let answer = try encode(" " + key + ".")
                rows += (ids.count - 1)..<(ids.count + answer.count - 1)
                ids += answer
            }
            return Sample(ids: ids, rows: rows)
        }
    }

    /// Runs the calibration on `model`.
    /// - Throws: `KVError.invalidParameter` for no contexts, fewer than one key or word, or a
    ///   sample longer than the model's context; whatever the prefills throw (`.cancelled`).
    public func run(model: LlamaModel, pool: ThreadPool = .shared,
                    progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws(KVError) -> DuoAttentionPattern {
        guard !contexts.isEmpty, contexts.allSatisfy({ $0 >= 1 }) else {
            throw .invalidParameter(name: "contexts", value: "\(contexts)", expected: "one or more positive lengths")
        }
        guard keys >= 1, words >= 1 else {
            throw .invalidParameter(name: "keys/words", value: "\(keys)/\(words)", expected: ">= 1 each")
        }
        let c = model.config
        let data = try samples(tokenizer: model.tokenizer)
        if let long = data.first(where: { $0.ids.count > c.contextLength }) {
            throw .invalidParameter(name: "contexts", value: "\(long.ids.count) tokens",
                                    expected: "samples within the model's context length \(c.contextLength)")
        }
        let flat = try KVHeadScores(Array(repeating: Array(repeating: 1, count: c.kvHeads), count: c.layers))
        let window = try DuoAttentionPattern(gates: flat, sinkSize: sinkSize, recentSize: recentSize)
        let heads = c.layers * c.kvHeads
        var loss = Array(repeating: Array(repeating: 0.0, count: c.kvHeads), count: c.layers)
        var done = 0
        let total = data.count * (1 + heads)
        for sample in data {
            let full = try LlamaSession(model: model, pool: pool).prefillHiddenStates(sample.ids, rows: sample.rows)
            done += 1
            progress(done, total)
            for l in 0..<c.layers {
                for m in 0..<c.kvHeads {
                    var flags = Array(repeating: Array(repeating: true, count: c.kvHeads), count: c.layers)
                    flags[l][m] = false
                    let policy = try DuoAttention(pattern: window, retrievalHeads: flags)
                    let mixed = try LlamaSession(model: model, policy: policy, pool: pool)
                        .prefillHiddenStates(sample.ids, rows: sample.rows)
                    var sum = 0.0
                    for (a, b) in zip(full, mixed) {
                        for (x, y) in zip(a, b) { sum += Double((x - y) * (x - y)) }
                    }
                    loss[l][m] += sum / Double(sample.rows.count * c.hidden) / Double(data.count)
                    done += 1
                    progress(done, total)
                }
            }
        }
        let top = loss.flatMap { $0 }.max() ?? 0
        let gates = try KVHeadScores(loss.map { $0.map { top > 0 ? Float($0 / top) : 0 } })
        return try DuoAttentionPattern(gates: gates, sinkSize: sinkSize, recentSize: recentSize)
    }
}
