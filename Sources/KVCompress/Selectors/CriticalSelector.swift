/// CriticalKV's output-aware selection around any selector: the inner selector decides how many
/// entries each head keeps; within each head, the first ``firstStageRatio`` of that count goes to
/// the best entries by the scorer's scores, and the rest to the best by
/// `(score + epsilon) * ||W_o v||_1`, the scores rescaled by how much each value writes into the
/// layer's output (see ``KVOutputProjection``).
///
/// Around ``UniformSelector`` this is kvpress's `CriticalKVPress`; around ``AdaptiveHeadSelector``
/// its `CriticalAdaKVPress` (the head budgets come from AdaKV's joint selection, and the first stage
/// holds at least AdaKV's safeguard, the rows a head keeps on its own scores). Needs the host's
/// output projection (``KVLayerContext/outputProjection()``). Unlike kvpress's CriticalAdaKV (which
/// masks), the evicted entries are really freed.
///
/// Paper: Feng et al., "Identify Critical KV Cache in LLM Inference from an Output Perturbation
/// Perspective" (arXiv 2502.03805). Reference: NVIDIA/kvpress `criticalkv_press.py`.
public struct CriticalSelector<Inner: KVSelector>: KVSelector {
    /// Decides each head's entry count.
    public let inner: Inner
    /// Added to the scores before the rescaling (kvpress default 1e-4).
    public let epsilon: Float
    /// Fraction of each head's count chosen by the plain scores (kvpress default 0.5; 0 disables
    /// the first stage).
    public let firstStageRatio: Double

    /// Creates the selector.
    /// - Throws: `KVError.invalidParameter` for a negative or non-finite `epsilon` or a
    ///   `firstStageRatio` outside `[0, 1]`.
    public init(inner: Inner, epsilon: Float = 1e-4, firstStageRatio: Double = 0.5) throws(KVError) {
        guard epsilon >= 0, epsilon.isFinite else {
            throw .invalidParameter(name: "epsilon", value: "\(epsilon)", expected: "a finite value >= 0")
        }
        guard firstStageRatio >= 0, firstStageRatio <= 1 else {
            throw .invalidParameter(name: "firstStageRatio", value: "\(firstStageRatio)", expected: "a fraction in [0, 1]")
        }
        self.inner = inner
        self.epsilon = epsilon
        self.firstStageRatio = firstStageRatio
    }

    /// The inner selector's counts, filled in two stages per head.
    /// - Throws: what the inner selector throws; `KVError.invalidParameter` when the host provides
    ///   no output projection.
    public func select(_ scores: KVScores, context: KVLayerContext) throws(KVError) -> [[Int]?] {
        let counts = context.counts
        let chosen = try inner.select(scores, context: context)
        guard chosen.contains(where: { $0 != nil }) else { return chosen }
        let projection = try context.outputProjection()
        var keep: [[Int]?] = []
        for m in counts.indices {
            guard let rows = chosen[m] else { keep.append(nil); continue }
            let budget = rows.count
            let positions = context.positions(head: m)
            // Stage 1: the best by the plain scores (at least one while anything is kept, as kvpress).
            // Rows the inner selector chose on their scores alone (AdaKV's safeguard) stay, as in kvpress.
            let first = max(budget == 0 ? 0 : max(firstStageRatio > 0 ? 1 : 0, Int(Double(budget) * firstStageRatio)),
                            min(budget, inner.scoreOnlyCount(head: m, context: context)))
            let ranked = try KVSelection.ranking(scores: scores.heads[m], positions: positions)
            // Stage 2: the rest by the rescaled scores, the stage-1 rows forced first.
            let norms = projection.valueOutputNorms(context, head: m)
            var rescaled = (0..<counts[m]).map { (scores.heads[m][$0] + epsilon) * norms[$0] }
            for j in ranked.prefix(first) { rescaled[j] = .infinity }
            keep.append(try KVSelection.topK(scores: rescaled, positions: positions, k: budget) ?? Array(0..<counts[m]))
        }
        return keep
    }

    /// The inner selector's fixed capacity.
    public func decodeCapacity(context: KVLayerContext) -> Int? { inner.decodeCapacity(context: context) }
}
