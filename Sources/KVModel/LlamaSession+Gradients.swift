import CKVKernels
import Foundation
import KVCompress
import KVCore

extension LlamaSession {
    /// The backward pass of a replay with gradients (KVgrad's): backpropagates
    /// `Φ = Σ_t ||h_t||²`, the replay tokens' last-layer outputs, through every layer (f32, weights
    /// dequantized one matrix at a time; the prompt's cache entries are constants, the replay's own
    /// entries are not), and hands each layer's post-RoPE queries and the norms of `∂Φ/∂a_t` (the
    /// gradient at the layer's attention output, which is the residual stream after its attention
    /// block) to ``KVCompressor/attributeReplay(layer:queries:gradientNorms:)``, which ends the replay.
    /// - Complexity: about twice the replay's forward pass, plus the attention recomputed per layer.
    /// - Throws: `KVError.cancelled`; whatever the policy's replay hook throws.
    func backpropagateReplay(_ tape: ReplayTape) throws(KVError) {
        let c = model.config
        let hidden = c.hidden, n = tape.tokenCount
        var grad = tape.output.map { 2 * $0 }   // ∂Φ/∂h at the last layer's output
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            if Task.isCancelled { throw .cancelled }
            let w = model.layers[l]
            // The feed-forward block, recomputed from the residual after attention.
            let mid = tape.mids[l]
            let n2 = rmsnorm(mid, w.ffnNorm, rows: n)
            let gate = project(w.gate, n2, rows: n), up = project(w.up, n2, rows: n)
            // Back through down, SiLU-gate, gate/up and the norm; plus the residual path.
            var dAct = applyTransposed(w.down, grad, rows: n)
            var dUp = [Float](repeating: 0, count: n * c.ffn)
            for i in 0..<(n * c.ffn) {
                let g = gate[i], sigma = 1 / (1 + expf(-g))
                dUp[i] = dAct[i] * g * sigma
                dAct[i] *= up[i] * sigma * (1 + g * (1 - sigma))   // now ∂Φ/∂gate
            }
            var dn2 = applyTransposed(w.gate, dAct, rows: n)
            let dn2Up = applyTransposed(w.up, dUp, rows: n)
            for i in dn2.indices { dn2[i] += dn2Up[i] }
            var dMid = rmsnormBackward(mid, w.ffnNorm, dn2, rows: n)
            for i in dMid.indices { dMid[i] += grad[i] }
            let norms = (0..<n).map { t in (0..<hidden).reduce(Float(0)) { $0 + dMid[t * hidden + $1] * dMid[t * hidden + $1] }.squareRoot() }
            try tape.queries[l].withUnsafeBufferPointer { (q: UnsafeBufferPointer<Float>) throws(KVError) in
                try compressor.attributeReplay(layer: l, queries: q.baseAddress!, gradientNorms: norms)
            }
            guard l > 0 else { break }   // the replay has left the cache; layer 0's input gradient is not needed
            // Back through W_o and the attention over the cache (the replay's rows get gradients).
            let dOut = applyTransposed(w.wo, dMid, rows: n)
            var (dq, dk, dv) = attentionBackward(layer: l, queries: tape.queries[l], dOutput: dOut, positions: tape.positions)
            let negated = tape.positions.map { -$0 }
            model.rope.apply(to: &dq, heads: c.heads, positions: negated)      // R(p)ᵀ = R(-p)
            model.rope.apply(to: &dk, heads: c.kvHeads, positions: negated)
            var dn1 = applyTransposed(w.wq, dq, rows: n)
            for (m, dy) in [(w.wk, dk), (w.wv, dv)] {
                let part = applyTransposed(m, dy, rows: n)
                for i in dn1.indices { dn1[i] += part[i] }
            }
            grad = rmsnormBackward(tape.inputs[l], w.attnNorm, dn1, rows: n)
            for i in grad.indices { grad[i] += dMid[i] }
        }
    }

    /// Gradients of the layer's attention (before `W_o`) with respect to its post-RoPE queries and
    /// to the replay's post-RoPE keys and values (the cache's last `n` rows of every head), given
    /// the gradient at its output; the probabilities are recomputed from the cache's rows.
    private func attentionBackward(layer l: Int, queries: [Float], dOutput: [Float],
                                   positions: [Int32]) -> (dq: [Float], dk: [Float], dv: [Float]) {
        let c = model.config
        let n = positions.count, d = c.headDim, hk = c.kvHeads, g = c.heads / hk
        let qWidth = c.heads * d, kvWidth = hk * d
        let scale = 1 / Float(d).squareRoot()
        let dq = UnsafeMutableBufferPointer<Float>.allocate(capacity: n * qWidth)
        let dk = UnsafeMutableBufferPointer<Float>.allocate(capacity: n * kvWidth)
        let dv = UnsafeMutableBufferPointer<Float>.allocate(capacity: n * kvWidth)
        defer { dq.deallocate(); dk.deallocate(); dv.deallocate() }
        dk.initialize(repeating: 0)
        dv.initialize(repeating: 0)
        let cache = self.cache
        pool.parallelFor(hk) { m in
            let count = cache.count(layer: l, head: m), before = count - n   // rows before the replay
            let (keys, values) = cache.rows(layer: l, head: m, 0..<count)
            let keysT = transpose(keys, rows: count, cols: d)
            var qh = [Float](repeating: 0, count: n * d), doh = qh, dqh = qh
            var p = [Float](repeating: 0, count: n * count), dp = p
            var pT = [Float](repeating: 0, count: n * n), dsT = pT
            for h in (m * g)..<(m * g + g) {
                for t in 0..<n {
                    for i in 0..<d {
                        qh[t * d + i] = queries[t * qWidth + h * d + i]
                        doh[t * d + i] = dOutput[t * qWidth + h * d + i]
                    }
                }
                // P = softmax(q Kᵀ / √d), causal over the replay's rows.
                kvk_matmul(KVK_F32, keys, count, d, qh, n, &p, count)
                p.withUnsafeMutableBufferPointer { pp in
                    for t in 0..<n {
                        let row = pp.baseAddress! + t * count, visible = before + t + 1
                        kvk_scale_f32(scale, row, visible)
                        _ = kvk_softmax(row, visible)
                        for j in visible..<count { row[j] = 0 }
                    }
                }
                // dP = dO Vᵀ; dS = P (dP - Σ_j P dP); dq = dS K / √d.
                kvk_matmul(KVK_F32, values, count, d, doh, n, &dp, count)
                for t in 0..<n {
                    var dot: Float = 0
                    for j in 0..<count { dot += p[t * count + j] * dp[t * count + j] }
                    for j in 0..<count { dp[t * count + j] = p[t * count + j] * (dp[t * count + j] - dot) * scale }
                }
                kvk_matmul(KVK_F32, keysT, d, count, dp, n, &dqh, d)
                for t in 0..<n { for i in 0..<d { dq[t * qWidth + h * d + i] = dqh[t * d + i] } }
                // The replay's own rows: dk += dSᵀ q, dv += Pᵀ dO (summed over the group's heads).
                for t in 0..<n {
                    for r in 0..<n {
                        dsT[r * n + t] = dp[t * count + before + r]
                        pT[r * n + t] = p[t * count + before + r]
                    }
                }
                let qhT = transpose(qh, rows: n, cols: d), dohT = transpose(doh, rows: n, cols: d)
                var part = [Float](repeating: 0, count: n * d)
                kvk_matmul(KVK_F32, qhT, d, n, dsT, n, &part, d)
                for r in 0..<n { for i in 0..<d { dk[r * kvWidth + m * d + i] += part[r * d + i] } }
                kvk_matmul(KVK_F32, dohT, d, n, pT, n, &part, d)
                for r in 0..<n { for i in 0..<d { dv[r * kvWidth + m * d + i] += part[r * d + i] } }
            }
        }
        return (Array(dq), Array(dk), Array(dv))
    }

    /// `W x` for each of `rows` rows of `x` (each `W.cols` floats), f32 activations.
    private func project(_ m: WeightMatrix, _ x: [Float], rows: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * m.rows)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { WeightMatrix.apply([(m, $0.baseAddress!)], x: xp.baseAddress!, xq: nil, n: rows, pool: pool) }
        }
        return y
    }

    /// `x W` for each of `rows` rows of `x` (each `W.rows` floats): `Wᵀ` applied, in f32.
    private func applyTransposed(_ m: WeightMatrix, _ x: [Float], rows: Int) -> [Float] {
        var dense = [Float](repeating: 0, count: m.rows * m.cols)
        dense.withUnsafeMutableBufferPointer { kvk_dequantize(m.type.kernelType, m.data, $0.baseAddress!, m.rows * m.cols) }
        let wT = transpose(dense, rows: m.rows, cols: m.cols)
        var y = [Float](repeating: 0, count: rows * m.cols)
        wT.withUnsafeBytes { raw in
            let view = WeightMatrix(name: m.name + "ᵀ", type: .f32, data: raw.baseAddress!, rows: m.cols, cols: m.rows)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { WeightMatrix.apply([(view, $0.baseAddress!)], x: xp.baseAddress!, xq: nil, n: rows, pool: pool) }
            }
        }
        return y
    }

    /// RMS-normalized rows of `x` (each `hidden` floats) times `weight`.
    private func rmsnorm(_ x: [Float], _ weight: UnsafePointer<Float>, rows: Int) -> [Float] {
        let hidden = model.config.hidden
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                for t in 0..<rows {
                    kvk_rmsnorm(xp.baseAddress! + t * hidden, weight, yp.baseAddress! + t * hidden, hidden, model.config.rmsEps)
                }
            }
        }
        return y
    }

    /// The gradient at the input of ``rmsnorm(_:_:rows:)`` given the gradient `dy` at its output:
    /// `dx = (w ⊙ dy) / r - x (Σ w dy x) / (H r³)`, `r = √(mean(x²) + ε)`.
    private func rmsnormBackward(_ x: [Float], _ weight: UnsafePointer<Float>, _ dy: [Float], rows: Int) -> [Float] {
        let hidden = model.config.hidden
        var dx = [Float](repeating: 0, count: x.count)
        for t in 0..<rows {
            let o = t * hidden
            var squares: Float = 0, dot: Float = 0
            for i in 0..<hidden {
                squares += x[o + i] * x[o + i]
                dot += weight[i] * dy[o + i] * x[o + i]
            }
            let r = (squares / Float(hidden) + model.config.rmsEps).squareRoot()
            let k = dot / (Float(hidden) * r * r * r)
            for i in 0..<hidden { dx[o + i] = weight[i] * dy[o + i] / r - x[o + i] * k }
        }
        return dx
    }
}

/// `rows x cols` row-major to `cols x rows` row-major.
private func transpose(_ a: [Float], rows: Int, cols: Int) -> [Float] {
    var t = [Float](repeating: 0, count: a.count)
    for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = a[r * cols + c] } }
    return t
}
