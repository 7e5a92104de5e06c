#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CKVKernels

/// CAPKV capacity scores (kvpress `CapPress`): how much of the layer's output "capacity" an entry
/// would take away, weighted by how well its key aligns with the prompt's queries.
///
/// For each query head `h` of a KV head, over its non-sink rows `j`:
/// 1. the anchor `a` = the mean pre-RoPE query of the prompt's tokens at positions `>= sinks`,
///    rotated by the RoPE rotation averaged over the next `futurePositions` positions (as
///    ``ExpectedAttentionScorer`` does);
/// 2. `w_j = exp(tau * (cos(a, k_j) - max_j cos(a, k_j)))` (keys and anchor unit-normalized);
/// 3. the capacity matrix `A = I + sum_j (w_j + epsilon) v_j v_j^T`, inverted by Cholesky in
///    double precision;
/// 4. `s_j = w_j * v_j^T A^-1 v_j`;
///
/// then the mean over the KV head's query group; the first `sinks` rows get the layer's maximum + 1.
/// The host must pass pre-RoPE queries.
///
/// Paper: "CAPKV" (arXiv 2604.25975). Reference: NVIDIA/kvpress `cap_press.py`.
public struct CapScorer: KVScorer {
    /// Sharpness of the query-key alignment weights.
    public let tau: Double
    /// Stabilizer added to every weight in the capacity matrix.
    public let epsilon: Double
    /// Gathers the query means and the averaged future rotation.
    let queryStatistics: ExpectedAttentionScorer

    /// Creates the scorer with kvpress's defaults.
    /// - Throws: `KVError.invalidParameter` for a non-finite or negative `tau` or `epsilon`,
    ///   `futurePositions < 1` or `sinks < 0`.
    public init(tau: Double = 5, futurePositions: Int = 512, sinks: Int = 4, epsilon: Double = 1e-6) throws(KVError) {
        guard tau >= 0, tau.isFinite else { throw .invalidParameter(name: "tau", value: "\(tau)", expected: "a finite value >= 0") }
        guard epsilon >= 0, epsilon.isFinite else {
            throw .invalidParameter(name: "epsilon", value: "\(epsilon)", expected: "a finite value >= 0")
        }
        self.tau = tau
        self.epsilon = epsilon
        queryStatistics = try ExpectedAttentionScorer(futurePositions: futurePositions, sinks: sinks, useCovariance: false)
    }

    /// Initial positions excluded from the query mean and always kept.
    public var sinks: Int { queryStatistics.sinks }
    /// Future positions the anchor's rotation is averaged over.
    public var futurePositions: Int { queryStatistics.futurePositions }

    /// Running query means (the state of ``ExpectedAttentionScorer`` without covariances).
    public typealias State = ExpectedAttentionScorer.State

    /// Empty query statistics.
    public func makeState(shape: KVModelShape) -> State { queryStatistics.makeState(shape: shape) }

    /// Accumulates the pre-RoPE queries of tokens at positions `>= sinks`.
    /// - Throws: `KVError.invalidParameter` when a prefill chunk comes without pre-RoPE queries.
    public func observe(_ context: KVLayerContext, state: inout State) throws(KVError) {
        try queryStatistics.observe(context, state: &state)
    }

    /// Capacity scores.
    /// - Throws: `KVError.invalidParameter` when the shape has no RoPE or no query was observed.
    public func scores(_ context: KVLayerContext, state: inout State) throws(KVError) -> KVScores {
        let shape = context.shape
        let d = shape.headDim, g = shape.groupSize, l = context.layer
        let rope = try shape.requireRoPE(for: "Cap")
        var anchors: [[Float]] = []
        for h in 0..<shape.heads {
            guard let mu = queryStatistics.rotatedQueryMean(head: h, layer: l, state: state, length: context.totalLength,
                                                            rope: rope) else {
                throw .invalidParameter(name: "prompt length", value: "\(context.totalLength)",
                                        expected: "more than sinks = \(sinks) tokens observed with pre-RoPE queries")
            }
            let norm = max(mu.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
            anchors.append(mu.map { Float($0 / norm) })
        }
        var heads: [[Float]] = []
        for m in 0..<shape.kvHeads {
            let s = context.cache.head(l, m)
            let rows = s.count, first = min(sinks, rows), n = rows - first
            var score = [Float](repeating: 0, count: rows)
            guard n > 0 else { heads.append(score); continue }
            var keys = s.keys(first..<(first + n))
            let values = s.values(first..<(first + n))
            keys.withUnsafeMutableBufferPointer { k in
                for j in 0..<n {
                    let norm = max(kvk_dot_f32(k.baseAddress! + j * d, k.baseAddress! + j * d, d).squareRoot(), 1e-12)
                    for i in 0..<d { k[j * d + i] /= norm }
                }
            }
            var cosine = [Float](repeating: 0, count: n)
            var scaledT = [Float](repeating: 0, count: d * n)   // (sqrt(w_j + eps) v_j)^T, d x n
            var gram = [Float](repeating: 0, count: d * d)
            var solved = [Float](repeating: 0, count: n * d)     // A^-1 v_j per row
            for h in (m * g)..<(m * g + g) {
                kvk_matvec(KVK_F32, keys, n, d, anchors[h], &cosine)
                let top = cosine.reduce(-Float.infinity) { max($0, min(max($1, -1), 1)) }
                let weights = cosine.map { exp(Double(tau) * Double(min(max($0, -1), 1) - top)) }
                for j in 0..<n {
                    let root = Float((weights[j] + epsilon).squareRoot())
                    for i in 0..<d { scaledT[i * n + j] = values[j * d + i] * root }
                }
                kvk_matmul(KVK_F32, scaledT, d, n, scaledT, d, &gram, d)  // gram[i][r] = sum_j S[j][i] S[j][r]
                var a = gram.map(Double.init)
                for i in 0..<d { a[i * d + i] += 1 }
                guard let inverse = PositiveDefinite.inverse(a, n: d) else {
                    throw .invalidState("Cap: the capacity matrix of layer \(l) head \(h) is not positive definite "
                        + "(non-finite values in the cache?)")
                }
                kvk_matmul(KVK_F32, inverse.map(Float.init), d, d, values, n, &solved, d)
                for j in 0..<n {
                    let leverage = values.withUnsafeBufferPointer { v in
                        solved.withUnsafeBufferPointer { y in kvk_dot_f32(v.baseAddress! + j * d, y.baseAddress! + j * d, d) }
                    }
                    score[first + j] += Float(weights[j]) * leverage / Float(g)
                }
            }
            heads.append(score)
        }
        var scores = KVScores(heads: heads)
        let pad = (scores.maximum ?? 0) + 1
        for m in scores.heads.indices { for j in 0..<min(sinks, scores.heads[m].count) { scores.heads[m][j] = pad } }
        return scores
    }
}
