/// Fast KVzip: KVzip's query-agnostic eviction with trained gates (``FastKVzipGates``) in place of
/// the replay: each prompt token's importance per KV head is predicted from its attention input while
/// the prompt is prefilled (no extra pass); the first `sinks` entries and a recent window
/// (`max(1, Int(L * windowRatio))` entries, or `windowSize` from 32,000 tokens on) score 1, the
/// highest a gate gives; then the lowest entries of all layers and heads together are evicted, as
/// ``KVzip`` does (``KVGlobalEviction``; per layer with `layerwise`). Entries are really evicted
/// (kvpress masks them). Only the first prompt of a sequence is compressed.
///
/// The host must pass the attention inputs (``KVLayerContext/attentionInputs``; `LlamaSession` does).
///
/// Paper: Kim, Han, Yun, "Fast KVzip" (arXiv 2601.17668). Reference: NVIDIA/kvpress
/// `fastkvzip_press.py` (defaults: 4 sinks, window ratio 0.02, window 4096, not layerwise);
/// Janghyun1230/FastKVzip.
public struct FastKVzip: KVCachePolicy {
    /// The trained gates.
    public let gates: FastKVzipGates
    /// How many entries stay, over all layers and heads together.
    public let budget: KVBudget
    /// Leading entries never evicted (kvpress: 4).
    public let sinks: Int
    /// Share of the prompt kept as the recent window below 32,000 tokens (kvpress: 0.02).
    public let windowRatio: Double
    /// The recent window from 32,000 prompt tokens on (kvpress: 4096).
    public let windowSize: Int
    /// Whether each layer gives up the same share (default false).
    public let layerwise: Bool

    /// Per-sequence state.
    public struct State: Sendable {
        /// `scores[layer][head][j]`: the first prompt's entry `j`'s predicted importance.
        var scores: [[[Float]]] = []
        /// Whether the prompt being prefilled is the sequence's first.
        var firstPrompt = false
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, negative sinks or window, or a
    ///   window ratio outside `[0, 1]`.
    public init(gates: FastKVzipGates, budget: KVBudget, sinks: Int = 4, windowRatio: Double = 0.02, windowSize: Int = 4096,
                layerwise: Bool = false) throws(KVError) {
        self.budget = try budget.validated()
        guard sinks >= 0, windowSize >= 0 else {
            throw .invalidParameter(name: "sinks/windowSize", value: "\(sinks)/\(windowSize)", expected: ">= 0")
        }
        guard windowRatio.isFinite, (0...1).contains(windowRatio) else {
            throw .invalidParameter(name: "windowRatio", value: "\(windowRatio)", expected: "a fraction in [0, 1]")
        }
        self.gates = gates
        self.sinks = sinks
        self.windowRatio = windowRatio
        self.windowSize = windowSize
        self.layerwise = layerwise
    }

    /// Fresh state.
    public func makeState(shape: KVModelShape) -> State { State() }

    /// Predicts the importance of the first prompt's tokens as they are prefilled.
    /// - Throws: `KVError.invalidParameter` without attention inputs; `.shapeMismatch` when the
    ///   gates do not fit the model.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk && l == 0 {
            state.firstPrompt = context.positions[0] == 0
            state.scores = Array(repeating: Array(repeating: [], count: context.shape.kvHeads), count: context.shape.layers)
        }
        guard state.firstPrompt else { return }
        guard let inputs = context.attentionInputs else {
            throw .invalidParameter(name: "attentionInputs", value: "nil",
                                    expected: "the tokens' normed hidden states: Fast KVzip's gates read them (pass attentionInputs "
                                        + "to KVCompressor.attend; LlamaSession does)")
        }
        guard gates.layers == context.shape.layers, gates.kvHeads == context.shape.kvHeads, gates.group == context.shape.groupSize,
              gates.inputSize == inputs.width else {
            throw .shapeMismatch("the Fast KVzip gates have \(gates.layers) layers of \(gates.inputSize) inputs for \(gates.kvHeads) KV heads "
                + "x \(gates.group); the model has \(context.shape.layers) layers, hidden size \(inputs.width), \(context.shape.kvHeads) x "
                + "\(context.shape.groupSize): use the gates trained for this model")
        }
        for t in 0..<context.tokenCount {
            let s = gates.scores(layer: l, input: inputs.values + t * inputs.width)
            for m in s.indices { state.scores[l][m].append(s[m]) }
        }
    }

    /// Evicts the lowest entries over every layer and head after the first prompt.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout State, pool: ThreadPool?) throws(KVError) {
        guard state.firstPrompt else { return }
        defer { state = State() }
        let length = state.scores[0][0].count
        guard length > 0, cache.totalEntries == shape.layers * shape.kvHeads * length else { return }
        let window = length < 32_000 ? max(1, Int(Double(length) * windowRatio)) : windowSize
        for l in state.scores.indices {
            for m in state.scores[l].indices {
                for j in 0..<min(sinks, length) { state.scores[l][m][j] = 1 }
                for j in max(0, length - window)..<length { state.scores[l][m][j] = 1 }
            }
        }
        try KVGlobalEviction.apply(scores: state.scores, length: length, budget: budget, layerwise: layerwise, cache: cache, shape: shape)
    }

    /// `"FastKVzip"`.
    public var name: String { "FastKVzip" }
}
