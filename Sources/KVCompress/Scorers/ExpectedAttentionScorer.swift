#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CKVKernels

/// Expected Attention (kvpress `ExpectedAttentionPress`): estimates the attention that *future*
/// queries will pay to each entry from the statistics of the prompt's queries and the RoPE rotation
/// of the next positions. Query-agnostic and needs no attention matrix.
///
/// For each query head `h`, with the pre-RoPE queries of the tokens at positions `>= sinks`:
/// 1. mean `mu` and population covariance `Sigma`;
/// 2. the rotation averaged over the next `futurePositions` positions `p = L ..< L + n`,
///    `R = mean_p R(p)` (RoPE with the **host's** pairing and inverse frequencies), `mu' = R mu`,
///    `Sigma' = R Sigma R^T`;
/// 3. for non-sink rows `z_j = mu' . k_j / sqrt(d) + k_j^T Sigma' k_j / (2 d)` (second term when
///    ``useCovariance``), softmax over the non-sink rows;
/// 4. mean over the KV head's query group; with ``useValueNorm`` `score = (a + epsilon) * ||v_j||`;
/// 5. the first `sinks` rows get `max + 1`.
///
/// The host must pass pre-RoPE queries (``KVLayerContext/preRoPEQueries``), in the same dimension
/// order as the keys (for GGUF llama weights: the interleaved pairing order).
///
/// Paper: Devoto et al., "Expected Attention: KV-cache Compression by Estimating Attention from
/// Future Queries Distribution" (arXiv 2510.00636). Reference: NVIDIA/kvpress
/// `expected_attention_press.py`.
public struct ExpectedAttentionScorer: KVScorer {
    /// Future positions the rotation is averaged over.
    public let futurePositions: Int
    /// Initial positions excluded from the statistics and always kept.
    public let sinks: Int
    /// Whether the covariance term is used.
    public let useCovariance: Bool
    /// Whether scores are rescaled by value norms.
    public let useValueNorm: Bool
    /// Added to the attention estimate before the value-norm rescaling.
    public let epsilon: Double
    /// Query statistics collected offline (kvpress `ExpectedAttentionStatsPress`), used instead of
    /// the prompt's own queries; nil: the prompt's.
    public let statistics: ExpectedAttentionStats?

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for `futurePositions < 1`, `sinks < 0` or a negative /
    ///   non-finite `epsilon`.
    public init(futurePositions: Int = 512, sinks: Int = 4, useCovariance: Bool = true, useValueNorm: Bool = true,
                epsilon: Double = 0, statistics: ExpectedAttentionStats? = nil) throws(KVError) {
        guard futurePositions >= 1 else {
            throw .invalidParameter(name: "futurePositions", value: "\(futurePositions)", expected: ">= 1")
        }
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        guard epsilon >= 0, epsilon.isFinite else {
            throw .invalidParameter(name: "epsilon", value: "\(epsilon)", expected: "a finite value >= 0")
        }
        self.futurePositions = futurePositions
        self.sinks = sinks
        self.useCovariance = useCovariance
        self.useValueNorm = useValueNorm
        self.epsilon = epsilon
        self.statistics = statistics
    }

    /// Running query statistics per layer and query head, accumulated around a shift (the first
    /// counted query of each head) so the covariance does not suffer from cancellation.
    public struct State: Sendable {
        var count: [Int]
        var shift: [[Float]]     // [layer][h * d + i]
        var sum: [[Double]]      // [layer][h * d + i], of (q - shift)
        var outer: [[Double]]    // [layer][h * d * d + a * d + b], a <= b filled, of (q - shift)
    }

    /// Empty statistics.
    public func makeState(shape: KVModelShape) -> State {
        let d = shape.headDim, H = shape.heads
        return State(count: Array(repeating: 0, count: shape.layers),
                     shift: Array(repeating: [], count: shape.layers),
                     sum: Array(repeating: [Double](repeating: 0, count: H * d), count: shape.layers),
                     outer: Array(repeating: useCovariance ? [Double](repeating: 0, count: H * d * d) : [], count: shape.layers))
    }

    /// Accumulates the pre-RoPE queries of tokens at positions `>= sinks` (nothing with offline
    /// ``statistics``).
    /// - Throws: `KVError.invalidParameter` when a prefill chunk comes without pre-RoPE queries.
    public func observe(_ context: KVLayerContext, state: inout State) throws(KVError) {
        guard statistics == nil else { return }
        let l = context.layer
        guard let pre = context.preRoPEQueries else {
            if context.phase == .prefill {
                throw .invalidParameter(name: "preRoPEQueries", value: "nil",
                                        expected: "the pre-RoPE queries (ExpectedAttention needs them)")
            }
            return
        }
        guard context.phase == .prefill else { return }
        let d = context.shape.headDim, H = context.shape.heads
        if context.isFirstChunk {
            state.count[l] = 0
            state.shift[l] = []
            for i in state.sum[l].indices { state.sum[l][i] = 0 }
            for i in state.outer[l].indices { state.outer[l][i] = 0 }
        }
        let tokens = (0..<context.tokenCount).filter { context.positions[$0] >= sinks }
        guard let firstToken = tokens.first else { return }
        if state.shift[l].isEmpty {
            state.shift[l] = (0..<(H * d)).map { pre[firstToken * context.queryTokenStride + $0] }
        }
        let n = tokens.count
        state.count[l] += n
        // Per head: the chunk's shifted queries transposed to [d][n], then sums and dot products.
        var t = [Float](repeating: 0, count: d * n)
        for h in 0..<H {
            t.withUnsafeMutableBufferPointer { tb in
                state.shift[l].withUnsafeBufferPointer { sh in
                    for (c, tok) in tokens.enumerated() {
                        let src = pre + tok * context.queryTokenStride + h * d
                        for i in 0..<d { tb[i * n + c] = src[i] - sh[h * d + i] }
                    }
                }
                state.sum[l].withUnsafeMutableBufferPointer { s in
                    for i in 0..<d {
                        var acc = 0.0
                        for c in 0..<n { acc += Double(tb[i * n + c]) }
                        s[h * d + i] += acc
                    }
                }
                if useCovariance {
                    let base = tb.baseAddress!
                    state.outer[l].withUnsafeMutableBufferPointer { o in
                        for a in 0..<d {
                            let row = h * d * d + a * d
                            for b in a..<d { o[row + b] += Double(kvk_dot_f32(base + a * n, base + b * n, n)) }
                        }
                    }
                }
            }
        }
    }

    /// The averaged rotation's per-pair cosine and sine means (Double), for sequence length `L`.
    func averagedRotation(length L: Int, rope: RoPE) -> (cos: [Double], sin: [Double]) {
        let f = rope.inverseFrequencies
        var c = [Double](repeating: 0, count: f.count), s = c
        for i in f.indices {
            var sc = 0.0, ss = 0.0
            for p in L..<(L + futurePositions) {
                let angle = Double(Float(p) * f[i])
                sc += cos(angle)
                ss += sin(angle)
            }
            c[i] = sc / Double(futurePositions)
            s[i] = ss / Double(futurePositions)
        }
        return (c, s)
    }

    /// Applies the averaged rotation `(cos, sin)` (per pair, from ``averagedRotation(length:rope:)``)
    /// to the `headDim` elements of `x` at `offset`, `offset + step`, ...
    static func rotate(_ x: inout [Double], offset: Int, step: Int, by rotation: (cos: [Double], sin: [Double]),
                       pairing: RoPEPairing, headDim d: Int) {
        for i in 0..<(d / 2) {
            let (a, b) = pairing.pair(i, headDim: d)
            let xa = x[offset + a * step], xb = x[offset + b * step]
            x[offset + a * step] = rotation.cos[i] * xa - rotation.sin[i] * xb
            x[offset + b * step] = rotation.sin[i] * xa + rotation.cos[i] * xb
        }
    }

    /// The mean pre-RoPE query of query head `h` in `layer` (the tokens at positions `>= sinks`
    /// observed so far), rotated by the rotation averaged over the `futurePositions` positions after
    /// `length`: `R mu`. Nil when no query was observed.
    func rotatedQueryMean(head h: Int, layer l: Int, state: State, length: Int, rope: RoPE) -> [Double]? {
        let n = state.count[l]
        guard n > 0 else { return nil }
        let d = rope.headDim
        var mu = (0..<d).map { Double(state.shift[l][h * d + $0]) + state.sum[l][h * d + $0] / Double(n) }
        Self.rotate(&mu, offset: 0, step: 1, by: averagedRotation(length: length, rope: rope), pairing: rope.pairing, headDim: d)
        return mu
    }

    /// The prompt's query mean and population covariance (`d x d`, empty without ``useCovariance``)
    /// of query head `h` in `layer`.
    func promptMoments(head h: Int, layer l: Int, state: State, d: Int) -> (mean: [Double], covariance: [Double]) {
        let n = Double(state.count[l])
        let dev = (0..<d).map { state.sum[l][h * d + $0] / n }   // mean of (q - shift)
        let mu = (0..<d).map { Double(state.shift[l][h * d + $0]) + dev[$0] }
        guard useCovariance else { return (mu, []) }
        var sig = [Double](repeating: 0, count: d * d)
        for a in 0..<d {
            for b in a..<d {
                let v = state.outer[l][h * d * d + a * d + b] / n - dev[a] * dev[b]
                sig[a * d + b] = v
                sig[b * d + a] = v
            }
        }
        return (mu, sig)
    }

    /// Expected-attention scores.
    /// - Throws: `KVError.invalidParameter` when the shape has no RoPE or no query
    ///   statistics were gathered.
    public func scores(_ context: KVLayerContext, state: inout State) throws(KVError) -> KVScores {
        let shape = context.shape
        let d = shape.headDim, H = shape.heads, g = shape.groupSize, l = context.layer
        let rope = try shape.requireRoPE(for: "ExpectedAttention")
        let n = state.count[l]
        if let statistics {
            guard statistics.layers == shape.layers, statistics.heads == H, statistics.headDim == d else {
                throw .shapeMismatch("the query statistics are for \(statistics.layers) layers x \(statistics.heads) heads x "
                    + "\(statistics.headDim) dims; the model has \(shape.layers) x \(H) x \(d): use the statistics made for this model")
            }
        } else if n == 0 {
            throw .invalidParameter(name: "prompt length", value: "\(context.totalLength)",
                                    expected: "more than sinks = \(sinks) tokens observed with pre-RoPE queries")
        }
        let rotation = averagedRotation(length: context.totalLength, rope: rope)
        func rotate(_ x: inout [Double], offset: Int, step: Int) {
            Self.rotate(&x, offset: offset, step: step, by: rotation, pairing: rope.pairing, headDim: d)
        }
        var muR = [[Float]](), sigmaR = [[Float]]()
        for h in 0..<H {
            var (mu, sig) = statistics?.moments(layer: l, head: h, pairing: rope.pairing) ?? promptMoments(head: h, layer: l, state: state, d: d)
            if useCovariance {
                for col in 0..<d { rotate(&sig, offset: col, step: d) }      // R Sigma (columns)
                for row in 0..<d { rotate(&sig, offset: row * d, step: 1) }  // (R Sigma) R^T (rows)
                sigmaR.append(sig.map { Float($0) })
            }
            rotate(&mu, offset: 0, step: 1)
            muR.append(mu.map { Float($0) })
        }
        let invSqrtD = 1 / Float(d).squareRoot()
        let key = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { key.deallocate() }
        var heads: [[Float]] = []
        var best: Float?
        for m in 0..<shape.kvHeads {
            let s = context.cache.head(l, m)
            let rows = s.count
            let first = min(sinks, rows)
            let nonSink = rows - first
            var keys = [Float](repeating: 0, count: nonSink * d)
            for j in 0..<nonSink {
                s.key(first + j, into: key, headDim: d)
                for i in 0..<d { keys[j * d + i] = key[i] }
            }
            var score = [Float](repeating: 0, count: rows)
            var z = [Float](repeating: 0, count: nonSink)
            var projected = [Float](repeating: 0, count: useCovariance ? nonSink * d : 0)
            keys.withUnsafeBufferPointer { kb in
                guard nonSink > 0 else { return }
                let k0 = kb.baseAddress!
                for h in (m * g)..<(m * g + g) {
                    // z_j = mu' . k_j / sqrt(d)  (+ k_j . (Sigma' k_j) / (2 d)), batched over keys.
                    muR[h].withUnsafeBufferPointer { mu in
                        kvk_matvec(KVK_F32, k0, nonSink, d, mu.baseAddress!, &z)
                    }
                    for j in 0..<nonSink { z[j] *= invSqrtD }
                    if useCovariance {
                        sigmaR[h].withUnsafeBufferPointer { sg in
                            projected.withUnsafeMutableBufferPointer { y in
                                kvk_matmul(KVK_F32, sg.baseAddress!, d, d, k0, nonSink, y.baseAddress!, d)
                                for j in 0..<nonSink {
                                    z[j] += kvk_dot_f32(k0 + j * d, y.baseAddress! + j * d, d) / Float(d) / 2
                                }
                            }
                        }
                    }
                    _ = kvk_softmax(&z, nonSink)
                    for j in 0..<nonSink { score[first + j] += z[j] / Float(g) }
                }
            }
            if useValueNorm {
                for j in first..<rows {
                    s.value(j, into: key, headDim: d)
                    let norm = kvk_dot_f32(key, key, d).squareRoot()
                    score[j] = (score[j] + Float(epsilon)) * norm
                }
            }
            for j in first..<rows { best = best.map { max($0, score[j]) } ?? score[j] }
            heads.append(score)
        }
        let pad = (best ?? 0) + 1
        for m in heads.indices { for j in 0..<min(sinks, heads[m].count) { heads[m][j] = pad } }
        return KVScores(heads: heads)
    }
}
