/// KVzip: query-agnostic eviction by context reconstruction. After the first prompt (the context),
/// the host runs the model on "Repeat the previous context exactly." followed by the context itself
/// (a ``KVReplay`` per chunk of ``chunkSize`` tokens); an entry matters as much as the most any
/// replay query of its KV head's group attends to it while the model reproduces its chunk. The
/// lowest entries of **all layers and heads together** are then evicted, so layers and heads keep
/// different numbers of entries (really evicted: kvpress only masks them).
///
/// Scoring (kvpress `KVzipPress.score_kvzip`): for replay chunk `[s, e)` of the prompt, the replay
/// queries' softmax runs over the first `min(sinks, s)` entries, the chunk's entries and the replay's
/// own entries (causal); entry `j` of the chunk scores the largest probability any replay query of
/// any head of its group puts on it. The first ``sinks`` entries then score the global maximum + 1.
/// The first ``prefixLength`` prompt tokens (a chat template's opening) are not reconstructed and
/// score 0 (kvpress 0.5.5 does this to its tokenizer's template prefix, even for prompts without a
/// template: 24 tokens of SmolLM2's default system prompt), so they go first.
///
/// Budget: with `.compressionRatio(r)` the `Int(layers * kvHeads * L * r)` lowest entries go (or
/// `Int(kvHeads * L * r)` per layer with ``layerwise``); a `.tokens` or `.bytes` budget keeps its
/// per-head capacity times `layers * kvHeads` entries in total. Every head keeps at least one entry.
/// Only the first prompt of a sequence is compressed (a question appended later stays whole, as in
/// kvpress's pipeline); entries appended while decoding are kept. The replays run the prompt through
/// the model once more and observe their attention (about four to five prefills' time on a CPU),
/// and the cache holds prompt + replay while they run.
///
/// KVzip+ (``plusNormalization``, kvpress `kvzip_plus_normalization`): each replay query's
/// probabilities are divided by the norm of its attention input `||x_t||`, and each chunk entry's
/// multiplied by `||W_o^h v_j||_2`, the size of what its value writes into the output through query
/// head `h`, before the maximum; the host must provide attention inputs and the output projection
/// (``LlamaSession`` does).
///
/// Paper: Kim et al., "KVzip: Query-Agnostic KV Cache Compression with Context Reconstruction"
/// (arXiv 2505.23416); reference code snu-mllab/KVzip and NVIDIA/kvpress `kvzip_press.py`.
public struct KVzip: KVCachePolicy {
    /// How many entries stay, over all layers and heads together.
    public let budget: KVBudget
    /// Leading entries never evicted (kvpress: 4).
    public let sinks: Int
    /// Prompt tokens reconstructed per replay (kvpress: 2048).
    public let chunkSize: Int
    /// Leading prompt tokens not reconstructed (a chat template's opening; default 0).
    public let prefixLength: Int
    /// Whether each layer gives up the same share instead of sharing one global ranking (default false).
    public let layerwise: Bool
    /// How a replay query's probabilities are weighted before the maximum.
    let weighting: Weighting
    /// Whether the scores are KVzip+'s, weighted by value output norms over query input norms (default false).
    public var plusNormalization: Bool { weighting == .plus }

    /// How a replay query's probability of a chunk entry is weighted before the maximum.
    enum Weighting: Sendable {
        /// Not at all (KVzip).
        case attention
        /// By `||W_o^h v_j||₂ / ||x_t||` (KVzip+).
        case plus
        /// By `||W_o^h v_j||₂ ||∂Φ/∂a_t||₂` (``KVgrad``): the replay asks for gradients.
        case gradient
    }

    /// The instruction before the first chunk's replay.
    static let firstInstruction = "\n\nRepeat the previous context exactly."
    /// The instruction before a later chunk's replay, followed by the previous chunk's last tokens.
    static let laterInstruction = "\n\nRepeat the part of the previous context exactly, starting with"
    /// Tokens of the previous chunk that open a later chunk's replay.
    static let overlap = 8

    /// Per-sequence state.
    public struct State: Sendable {
        /// `scores[layer][head][j]`: prompt entry `j`'s score so far.
        var scores: [[[Float]]] = []
        /// The prompt tokens each replay reconstructs (offsets from the prompt's start).
        var chunks: [Range<Int>] = []
        /// Length of the prompt being compressed (0: none).
        var promptLength = 0
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, negative sinks or prefix, or a
    ///   chunk size below 1.
    public init(budget: KVBudget, sinks: Int = 4, chunkSize: Int = 2048, prefixLength: Int = 0,
                layerwise: Bool = false, plusNormalization: Bool = false) throws(KVError) {
        try self.init(budget: budget, sinks: sinks, chunkSize: chunkSize, prefixLength: prefixLength, layerwise: layerwise,
                      weighting: plusNormalization ? .plus : .attention)
    }

    /// Creates the policy with any weighting (``KVgrad`` uses `.gradient`).
    init(budget: KVBudget, sinks: Int, chunkSize: Int, prefixLength: Int, layerwise: Bool,
         weighting: Weighting) throws(KVError) {
        self.budget = try budget.validated()
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        guard chunkSize >= 1 else { throw .invalidParameter(name: "chunkSize", value: "\(chunkSize)", expected: ">= 1") }
        guard prefixLength >= 0 else {
            throw .invalidParameter(name: "prefixLength", value: "\(prefixLength)", expected: ">= 0")
        }
        self.sinks = sinks
        self.chunkSize = chunkSize
        self.prefixLength = prefixLength
        self.layerwise = layerwise
        self.weighting = weighting
    }

    /// `"KVzip+"` with ``plusNormalization``, else `"KVzip"`.
    public var name: String { plusNormalization ? "KVzip+" : "KVzip" }

    /// Fresh state: nothing scored.
    public func makeState(shape: KVModelShape) -> State { State() }

    /// Nothing during a prompt: the replays after it score.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {}

    /// One replay per chunk of the first prompt after ``prefixLength``, when every head still
    /// holds the whole prompt.
    public func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout State) -> [KVReplay] {
        state = State()
        guard prompt.lowerBound == 0, prompt.count > prefixLength, cache.totalEntries == cache.layers * cache.kvHeads * prompt.count
        else { return [] }
        state.promptLength = prompt.count
        state.scores = Array(repeating: Array(repeating: Array(repeating: 0, count: prompt.count), count: cache.kvHeads),
                             count: cache.layers)
        state.chunks = stride(from: prefixLength, to: prompt.count, by: chunkSize).map { $0..<min(prompt.count, $0 + chunkSize) }
        return state.chunks.enumerated().map { i, chunk in
            let gradients = weighting == .gradient
            if i == 0 { return KVReplay([.text(Self.firstInstruction), .assistantTurn, .prompt(chunk)], gradients: gradients) }
            let previous = state.chunks[i - 1]
            return KVReplay([.text(Self.laterInstruction), .prompt(max(previous.lowerBound, previous.upperBound - Self.overlap)..<previous.upperBound),
                             .assistantTurn, .prompt(chunk)], gradients: gradients)
        }
    }

    /// Raises the chunk's scores to the largest renormalized probability of this replay chunk's
    /// queries (weighted as KVzip+ with ``plusNormalization``, as KVgrad with gradients).
    /// - Throws: `KVError.invalidParameter` for KVzip+ or KVgrad when the host gives no attention
    ///   inputs or output projection; `.invalidState` for KVgrad without gradient norms.
    public func afterReplay(_ context: KVLayerContext, replay: Int, state: inout State) throws(KVError) {
        guard replay < state.chunks.count else { return }
        let chunk = state.chunks[replay], length = state.promptLength
        let sink = min(sinks, chunk.lowerBound)
        let g = context.shape.groupSize
        let counts = context.counts
        // Per replay query t: a factor on its row (KVzip+: 1 / ||x_t||, KVgrad: ||∂Φ/∂a_t||); per query
        // head and chunk entry: ||W_o^h v_j||₂.
        var rowWeights: [Float]?, valueNorms: [[[Float]]]?
        switch weighting {
        case .attention: break
        case .plus:
            guard let inputs = context.attentionInputs else {
                throw .invalidParameter(name: "attentionInputs", value: "nil",
                                        expected: "the layer's attention inputs for KVzip+ (LlamaSession provides them)")
            }
            rowWeights = (0..<context.tokenCount).map { t in
                1 / (0..<inputs.width).reduce(Float(0)) { $0 + inputs.values[t * inputs.width + $1] * inputs.values[t * inputs.width + $1] }.squareRoot()
            }
        case .gradient:
            guard let norms = context.replayGradientNorms else {
                throw .invalidState("KVgrad's replay hook ran without gradient norms: the host must backpropagate the replay "
                    + "and call KVCompressor.attributeReplay (LlamaSession does)")
            }
            rowWeights = norms
        }
        if weighting != .attention {
            let projection = try context.outputProjection()
            valueNorms = (0..<context.shape.kvHeads).map { projection.valueOutputNorms(context, head: $0, rows: chunk, order: 2) }
        }
        context.forEachAttentionRow { h, t, row in
            let m = h / g
            // kvpress's softmax runs over the sinks, the chunk and the replay only.
            var denominator: Float = 0
            for j in 0..<sink { denominator += row[j] }
            for j in chunk { denominator += row[j] }
            for j in length..<counts[m] { denominator += row[j] }
            guard denominator > 0 else { return }
            let inverse = 1 / denominator
            state.scores[context.layer][m].withUnsafeMutableBufferPointer { scores in
                if let rowWeights, let valueNorms {
                    let weights = valueNorms[m][h - m * g], rowWeight = rowWeights[t]
                    for j in chunk { scores[j] = max(scores[j], row[j] * inverse * weights[j - chunk.lowerBound] * rowWeight) }
                } else {
                    for j in chunk { scores[j] = max(scores[j], row[j] * inverse) }
                }
            }
        }
    }

    /// Evicts the lowest entries over every layer and head once the replays ran.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout State, pool: ThreadPool?) throws(KVError) {
        try evict(cache: cache, shape: shape, state: &state, reserved: 0)
    }

    /// The eviction of ``afterPrompt(cache:shape:state:pool:)``, with `reserved` entries per head
    /// after the prompt counted against the budget (``RestoreKV``'s).
    func evict(cache: KVCache, shape: KVModelShape, state: inout State, reserved: Int) throws(KVError) {
        let length = state.promptLength
        guard length > 0 else { return }
        defer { state = State() }
        let top = state.scores.lazy.flatMap { $0 }.flatMap { $0 }.max() ?? 0
        for l in state.scores.indices {
            for m in state.scores[l].indices {
                for j in 0..<min(sinks, length) { state.scores[l][m][j] = top + 1 }
            }
        }
        try KVGlobalEviction.apply(scores: state.scores, length: length, budget: budget, layerwise: layerwise, cache: cache,
                                   shape: shape, reserved: reserved)
    }
}
