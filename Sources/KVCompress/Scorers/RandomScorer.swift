/// Uniform random scores (kvpress `RandomPress`), the baseline every policy should beat.
///
/// Every scoring call starts a fresh generator from ``seed`` and draws one score per row, KV head
/// after KV head, as kvpress's seeded press does with `torch.rand(1, kvHeads, rows)`: the generator
/// is PyTorch's (MT19937, 24-bit floats), so with the same seed the scores are bit-identical to
/// kvpress's and every layer of a one-pass prefill keeps the same rows (heads differ).
///
/// Reference: NVIDIA/kvpress `random_press.py`.
public struct RandomScorer: KVStatelessScorer {
    /// The generator's seed.
    public let seed: UInt32

    /// Creates the scorer (kvpress's press defaults to an unseeded generator; here the seed is
    /// always given, 0 by default, so runs repeat).
    public init(seed: UInt32 = 0) { self.seed = seed }

    /// Fresh uniform scores in `[0, 1)`.
    public func scores(_ context: KVLayerContext) -> KVScores {
        var generator = MersenneTwister(seed: seed)
        return KVScores(heads: context.counts.map { n in (0..<n).map { _ in generator.nextUnitFloat() } })
    }
}
