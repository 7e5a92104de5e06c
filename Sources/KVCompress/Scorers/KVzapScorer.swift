/// KVzap: each entry's score is what a trained surrogate (``KVzapSurrogate``) predicts from the
/// token's attention input (its normed hidden state) for its KV head: a fast stand-in for KVzip's
/// replay, usable while prefilling and decoding. Ranks like any scorer (kvpress's `KVzapPress`
/// with a compression ratio), or decides by a threshold inside ``DMS`` (kvpress's KVzap method,
/// `DMSPress(KVzapPress(...), threshold=-4)`).
///
/// The host must pass the attention inputs (``KVLayerContext/attentionInputs``; `LlamaSession`
/// does). A token's scores depend on its own input only, so each is computed once, when the token
/// is processed, and remembered by position (do not combine with in-cache re-positioning).
///
/// Paper: "KVzap" (arXiv 2601.07891). Reference: NVIDIA/kvpress `kvzap_press.py` (surrogates
/// `nvidia/KVzap-{linear,mlp}-<model>`).
public struct KVzapScorer: KVScorer {
    /// The trained surrogate.
    public let surrogate: KVzapSurrogate

    /// Creates the scorer.
    public init(surrogate: KVzapSurrogate) { self.surrogate = surrogate }

    /// Predicted scores per layer, KV head and position (NaN: not seen).
    public struct State: Sendable {
        var byPosition: [[[Float]]]
    }

    /// Empty memory.
    public func makeState(shape: KVModelShape) -> State {
        State(byPosition: Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers))
    }

    /// Predicts the scores of the tokens just processed.
    /// - Throws: `KVError.invalidParameter` when the host gives no attention inputs;
    ///   `.shapeMismatch` when the surrogate does not fit the model.
    public func observe(_ context: KVLayerContext, state: inout State) throws(KVError) {
        guard let inputs = context.attentionInputs else {
            throw .invalidParameter(name: "attentionInputs", value: "nil",
                                    expected: "the tokens' normed hidden states: KVzap predicts from them (pass attentionInputs "
                                        + "to KVCompressor.attend; LlamaSession does)")
        }
        guard surrogate.layers == context.shape.layers, surrogate.outputs == context.shape.kvHeads,
              surrogate.inputSize == inputs.width else {
            throw .shapeMismatch("the KVzap surrogate has \(surrogate.layers) layers of \(surrogate.inputSize) inputs -> "
                + "\(surrogate.outputs) scores; the model has \(context.shape.layers) layers, hidden size \(inputs.width), "
                + "\(context.shape.kvHeads) KV heads: use the surrogate made for this model")
        }
        let l = context.layer
        if context.phase == .prefill && context.isFirstChunk {
            for m in state.byPosition[l].indices { state.byPosition[l][m].removeAll(keepingCapacity: true) }
        }
        for t in 0..<context.tokenCount {
            let p = Int(context.positions[t])
            let s = surrogate.scores(layer: l, input: inputs.values + t * inputs.width)
            for m in 0..<context.shape.kvHeads {
                if state.byPosition[l][m].count <= p {
                    state.byPosition[l][m].append(contentsOf: repeatElement(.nan, count: p + 1 - state.byPosition[l][m].count))
                }
                state.byPosition[l][m][p] = s[m]
            }
        }
    }

    /// The remembered prediction of every row.
    /// - Throws: `KVError.invalidState` for a row whose token this scorer never saw.
    public func scores(_ context: KVLayerContext, state: inout State) throws(KVError) -> KVScores {
        let l = context.layer
        var heads: [[Float]] = []
        for m in 0..<context.shape.kvHeads {
            let known = state.byPosition[l][m]
            var row: [Float] = []
            for p in context.positions(head: m) {
                guard Int(p) < known.count, !known[Int(p)].isNaN else {
                    throw .invalidState("KVzap has no score for position \(p) of layer \(l), KV head \(m): it scores the "
                        + "tokens it saw processed (put it in the policy from the sequence's start)")
                }
                row.append(known[Int(p)])
            }
            heads.append(row)
        }
        return KVScores(heads: heads)
    }
}
