import CKVKernels

/// Approximate statistical leverage of the pre-RoPE keys (kvpress `LeverageScorePress`): keys that
/// stick out of the head's key distribution score high, whatever the queries.
///
/// Per KV head, with `X` the pre-RoPE keys (the cached keys rotated back by their positions, their
/// dimensions in the rotate-half order of Hugging Face checkpoints whatever the host's pairing),
/// centered over the rows, times a Gaussian sketch `Phi` (`headDim x sketchDimension`, scaled by
/// `1 / sqrt(sketchDimension)`): `G = X^T X` (symmetrized, plus a jitter of 1e-2 times the
/// identity, ten times more on each failed Cholesky, five tries), the leverage of row `j` is
/// `x_j^T G^-1 x_j` (at least 0); the scores are z-scored over every head and row of the layer.
/// With ``skipFirst`` / ``skipLast`` (``CompactorScorer``'s sinks) the first and last rows of each
/// head are left out of all of it and score above every other row.
///
/// The sketch comes from a generator seeded once per sequence (``seed``) and drawn layer after layer
/// as PyTorch's `torch.randn(1, kvHeads, headDim, sketchDimension)` draws from the global generator
/// after `torch.manual_seed(seed)` (see ``MersenneTwister``): with the seed kvpress's reference run
/// used, the sketches agree to an ulp and the kept sets to near ties.
///
/// Paper: Chari and Van Durme, "Compactor: Calibrated Query-Agnostic KV Cache Compression with
/// Approximate Leverage Scores" (arXiv 2507.08143). Reference: NVIDIA/kvpress `leverage_press.py`.
public struct LeverageScoreScorer: KVScorer {
    /// Columns of the Gaussian sketch (kvpress default 48).
    public let sketchDimension: Int
    /// The seed of the sketches' generator.
    public let seed: UInt32
    /// Initial rows left out (0).
    public let skipFirst: Int
    /// Final rows left out (0).
    public let skipLast: Int

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for a sketch dimension below 1 or a negative skip.
    public init(sketchDimension: Int = 48, seed: UInt32 = 0, skipFirst: Int = 0, skipLast: Int = 0) throws(KVError) {
        guard sketchDimension >= 1 else {
            throw .invalidParameter(name: "sketchDimension", value: "\(sketchDimension)", expected: ">= 1")
        }
        guard skipFirst >= 0, skipLast >= 0 else {
            throw .invalidParameter(name: "skipFirst / skipLast", value: "\(skipFirst) / \(skipLast)", expected: ">= 0 rows")
        }
        self.skipFirst = skipFirst
        self.skipLast = skipLast
        self.sketchDimension = sketchDimension
        self.seed = seed
    }

    /// The sketches' generator, shared by the layers in the order they are scored.
    public struct State: @unchecked Sendable {
        var generator: MersenneTwister
    }

    /// A generator seeded with ``seed``.
    public func makeState(shape: KVModelShape) -> State { State(generator: MersenneTwister(seed: seed)) }

    /// Z-scored leverage of every row.
    /// - Throws: `KVError.invalidParameter` when the shape has no RoPE; `.invalidState` when the
    ///   sketched Gram matrix stays singular after five jitters (non-finite keys).
    public func scores(_ context: KVLayerContext, state: inout State) throws(KVError) -> KVScores {
        let shape = context.shape, d = shape.headDim, k = sketchDimension
        let rope = try shape.requireRoPE(for: "LeverageScore")
        let count = shape.kvHeads * d * k
        let sketch = state.generator.normals(count: max(count, 16)).prefix(count).map { $0 * (1 / Float(k).squareRoot()) }
        var heads: [[Float]] = []
        for m in 0..<shape.kvHeads {
            let s = context.cache.head(context.layer, m)
            let first = min(skipFirst, s.count), last = min(skipLast, s.count - first)
            let n = s.count - first - last
            var keys = s.keys(first..<(first + n))
            rope.apply(to: &keys, heads: 1, positions: (0..<n).map { -s.position(first + $0) })   // back to pre-RoPE
            // The sketch mixes dimensions, so their order matters: take the rotate-half order of
            // Hugging Face checkpoints (each RoPE pair's first elements, then its second ones), which
            // GGUF files permute to interleaved pairs.
            let order = (0..<(d / 2)).map { rope.pairing.pair($0, headDim: d).0 } + (0..<(d / 2)).map { rope.pairing.pair($0, headDim: d).1 }
            keys = (0..<(n * d)).map { keys[$0 / d * d + order[$0 % d]] }
            var mean = [Float](repeating: 0, count: d)
            for j in 0..<n { for i in 0..<d { mean[i] += keys[j * d + i] } }
            for i in 0..<d { mean[i] /= Float(max(n, 1)) }
            for j in 0..<n { for i in 0..<d { keys[j * d + i] -= mean[i] } }
            // X = keys Phi (n x k): kvk_matmul takes Phi^T rows (k x d).
            var phiT = [Float](repeating: 0, count: k * d)
            for i in 0..<d { for c in 0..<k { phiT[c * d + i] = sketch[(m * d + i) * k + c] } }
            var x = [Float](repeating: 0, count: n * k)
            kvk_matmul(KVK_F32, phiT, k, d, keys, n, &x, k)
            var gram = [Double](repeating: 0, count: k * k)
            for j in 0..<n {
                for a in 0..<k {
                    let xa = Double(x[j * k + a])
                    for b in a..<k { gram[a * k + b] += xa * Double(x[j * k + b]) }
                }
            }
            for a in 0..<k { for b in 0..<a { gram[a * k + b] = gram[b * k + a] } }
            var inverse: [Double]?
            var jitter = 1e-2
            for _ in 0..<5 where inverse == nil {
                var g = gram
                for a in 0..<k { g[a * k + a] += jitter }
                inverse = PositiveDefinite.inverse(g, n: k)
                jitter *= 10
            }
            guard let inv = inverse?.map(Float.init) else {
                throw .invalidState("LeverageScore: the sketched key Gram matrix of layer \(context.layer) head \(m) is singular "
                    + "after five jitters (non-finite keys in the cache?)")
            }
            var y = [Float](repeating: 0, count: n * k)
            kvk_matmul(KVK_F32, inv, k, k, x, n, &y, k)
            heads.append((0..<n).map { j in max(0, (0..<k).reduce(Float(0)) { $0 + x[j * k + $1] * y[j * k + $1] }) })
        }
        // z-score over the layer (unbiased standard deviation, at least 1e-6, as torch.std).
        let all = heads.joined().map(Double.init)
        let mu = all.reduce(0, +) / Double(max(all.count, 1))
        let sd = max((all.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(max(all.count - 1, 1))).squareRoot(), 1e-6)
        return KVScores(heads: heads.indices.map { m in
            let rows = context.count(head: m), first = min(skipFirst, rows)
            let z = heads[m].map { Float((Double($0) - mu) / sd) }
            return Array(repeating: .greatestFiniteMagnitude, count: first) + z
                + Array(repeating: .greatestFiniteMagnitude, count: rows - first - z.count)
        })
    }
}
