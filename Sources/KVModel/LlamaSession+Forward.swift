import CKVKernels
import Foundation
import KVCompress
import KVCore

extension LlamaSession {
    /// What one layer's pass exposes to cache policies: the queries of the tokens just processed
    /// (post- and pre-RoPE, `[token][head][headDim]` f32), their positions, and the attention's
    /// column sums per KV head and cache row when they were asked for.
    struct LayerPass {
        let layer: Int
        let tokenCount: Int
        let queries: UnsafePointer<Float>
        let preRoPEQueries: UnsafePointer<Float>
        let positions: UnsafePointer<Int32>
        let attentionColumnSums: [[Float]]?
    }

    /// Runs `tokens` through every layer at positions `position ..< position + count`, appending
    /// their keys and values to the cache, and calls `afterAttention` for every layer right after
    /// its attention (where prefill policies compress). Writes the last token's logits into the
    /// scratch logits buffer when `logits` is true. With `columnSums`, the pass (prefill chunk or
    /// decode step) also hands the attention's column sums to `afterAttention` (computed by the
    /// attention itself, for policies that accumulate attention).
    func forward(_ tokens: UnsafeBufferPointer<Int32>, logits: Bool, columnSums: Bool = false,
                 afterAttention: (LayerPass) throws(KVError) -> Void) throws(KVError) {
        let c = model.config
        let n = tokens.count
        precondition(n >= 1 && n <= chunkSize, "forward chunk of \(n) tokens, chunk size \(chunkSize)")
        let s = scratch
        let d = c.headDim
        let hidden = c.hidden
        let kvDim = c.kvHeads * d
        let fast = model.mode == .fast
        for t in 0..<n {
            let id = tokens[t]
            guard id >= 0 && Int(id) < c.vocab else {
                throw .invalidParameter(name: "token id", value: "\(id)", expected: "0..<\(c.vocab)")
            }
            model.embed(id, into: s.x + t * hidden)
            s.positions[t] = Int32(position + t)
        }
        let scale = 1 / Float(d).squareRoot()

        func project(_ w: WeightMatrix, _ input: UnsafeMutablePointer<Float>, quantized: Bool,
                     into out: UnsafeMutablePointer<Float>) {
            let useQ = fast && w.usesQuantizedActivations
            if useQ && !quantized { kvk_quantize_act(input, s.xq, n * w.cols) }
            w.apply(x: input, xq: useQ ? UnsafePointer(s.xq) : nil, n: n, y: out, ldy: w.rows, pool: pool)
        }

        for (l, w) in model.layers.enumerated() {
            if Task.isCancelled { throw .cancelled }
            // Attention block.
            for t in 0..<n {
                kvk_rmsnorm(s.x + t * hidden, w.attnNorm, s.xn + t * hidden, hidden, c.rmsEps)
            }
            project(w.wq, s.xn, quantized: false, into: s.q)
            project(w.wk, s.xn, quantized: true, into: s.k)
            project(w.wv, s.xn, quantized: true, into: s.v)
            s.qPre.update(from: s.q, count: n * hidden)
            model.ropeInverseFrequencies.withUnsafeBufferPointer { f in
                kvk_rope(s.q, n, c.heads, d, hidden, s.positions, f.baseAddress!, model.ropePairing.kernelValue)
                kvk_rope(s.k, n, c.kvHeads, d, kvDim, s.positions, f.baseAddress!, model.ropePairing.kernelValue)
            }
            try cache.append(layer: l, keys: s.k, values: s.v, positions: s.positions, count: n)
            let views = cache.headViews(layer: l)
            // With column sums, the attention writes them into `flat` (KV head m at m * stride).
            let stride = columnSums ? views.map(\.count).max() ?? 0 : 0
            let flat = columnSums ? UnsafeMutablePointer<Float>.allocate(capacity: max(views.count * stride, 1)) : nil
            defer { flat?.deallocate() }
            if n == 1 {
                Attention.decode(query: s.q, heads: c.heads, headDim: d, kv: views, scale: scale, output: s.attn,
                                 columnSums: flat, columnSumStride: stride, pool: pool)
            } else {
                Attention.prefill(queries: s.q, queryCount: n, queryTokenStride: hidden,
                                  queryPositions: s.positions, heads: c.heads, headDim: d, kv: views, scale: scale,
                                  output: s.attn, columnSums: flat, columnSumStride: stride, pool: pool)
            }
            let sums = flat.map { f in
                views.indices.map { m in Array(UnsafeBufferPointer(start: f + m * stride, count: views[m].count)) }
            }
            try afterAttention(LayerPass(layer: l, tokenCount: n, queries: s.q, preRoPEQueries: s.qPre,
                                         positions: s.positions, attentionColumnSums: sums))
            project(w.wo, s.attn, quantized: false, into: s.xn)
            kvk_axpy_f32(1, s.xn, s.x, n * hidden)
            // Feed-forward block.
            for t in 0..<n {
                kvk_rmsnorm(s.x + t * hidden, w.ffnNorm, s.xn + t * hidden, hidden, c.rmsEps)
            }
            project(w.gate, s.xn, quantized: false, into: s.gate)
            project(w.up, s.xn, quantized: true, into: s.up)
            kvk_silu_mul(s.gate, s.up, s.gate, n * c.ffn)
            project(w.down, s.gate, quantized: false, into: s.xn)
            kvk_axpy_f32(1, s.xn, s.x, n * hidden)
        }
        position += n
        if logits {
            let last = s.x + (n - 1) * hidden
            kvk_rmsnorm(last, model.outputNorm, s.xn, hidden, c.rmsEps)
            let out = model.output
            if fast && out.usesQuantizedActivations {
                kvk_quantize_act(s.xn, s.xq, hidden)
                out.apply(x: s.xn, xq: s.xq, n: 1, y: s.logits, ldy: out.rows, pool: pool)
            } else {
                out.apply(x: s.xn, xq: nil, n: 1, y: s.logits, ldy: out.rows, pool: pool)
            }
        }
    }

    /// A copy of the last computed logits.
    var lastLogits: [Float] {
        Array(UnsafeBufferPointer(start: scratch.logits, count: model.config.vocab))
    }
}
