/// kvpress ObservedAttention: the attention every query paid to an entry, normalized by the number
/// of queries that could see it, averaged over the KV head's query group:
/// `score[m, j] = mean_{h in group m} ( sum_{t >= j} A^h[t, j] / (L - j) )` with `j` the entry's
/// position and `L` the sequence length.
///
/// The attention of every prompt query is accumulated chunk by chunk: from the column sums the
/// host's prefill attention produced (``KVLayerContext/attentionColumnSums``) when it provides them,
/// otherwise probed in blocks of ``blockSize`` queries (memory `heads x blockSize x L` floats);
/// decode queries are added too. The H2O paper's unnormalized sum is ``H2O``.
///
/// Paper: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
/// Language Models", NeurIPS 2023 (arXiv 2306.14048). Reference: NVIDIA/kvpress
/// `observed_attention_press.py`.
public struct ObservedAttentionScorer: KVScorer {
    /// Queries probed at once.
    public let blockSize: Int

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for `blockSize < 1`.
    public init(blockSize: Int = 64) throws(KVError) {
        guard blockSize >= 1 else { throw .invalidParameter(name: "blockSize", value: "\(blockSize)", expected: ">= 1") }
        self.blockSize = blockSize
    }

    /// `true`: prompt attention is accumulated from the host's column sums when it provides them.
    public var needsAttentionColumnSums: Bool { true }

    /// Accumulated attention per layer, KV head and position.
    public func makeState(shape: KVModelShape) -> KVAccumulatedAttention { KVAccumulatedAttention(shape: shape) }

    /// Accumulates the attention of the context's queries.
    public func observe(_ context: KVLayerContext, state: inout KVAccumulatedAttention) {
        if context.phase == .prefill && context.isFirstChunk { state.reset(layer: context.layer) }
        state.accumulate(context, blockSize: blockSize)
    }

    /// Normalized accumulated attention.
    public func scores(_ context: KVLayerContext, state: inout KVAccumulatedAttention) -> KVScores {
        let L = Float(context.totalLength)
        return KVScores(heads: (0..<context.shape.kvHeads).map { m in
            context.positions(head: m).map { p in state.value(layer: context.layer, head: m, position: Int(p)) / (L - Float(p)) }
        })
    }
}
