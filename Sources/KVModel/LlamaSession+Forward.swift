import CKVKernels
import Foundation
import KVCompress
import KVCore

extension LlamaSession {
    /// Runs `tokens` as one step through every layer: a prompt chunk (`decode` false; `endsPrompt`
    /// marks the chunk that ends a prompt), a chunk of the policy's pending replay (`replay`;
    /// `endsPrompt` marks its last chunk) or a decode step. Positions come from the compressor's
    /// step (the cache owns them); each layer's attention and policy hook run in
    /// `KVCompressor.attend`, or in `shared` when other sessions follow this pass. Leaves every
    /// token's final hidden state in `scratch.x`.
    func forward(_ tokens: UnsafeBufferPointer<Int32>, decode: Bool, endsPrompt: Bool, replay: Bool = false,
                 shared: SharedPass? = nil) throws(KVError) {
        let c = model.config
        for id in tokens where id < 0 || Int(id) >= c.vocab {
            throw .invalidParameter(name: "token id", value: "\(id)", expected: "0..<\(c.vocab) (the model's vocabulary)")
        }
        try forward(count: tokens.count, decode: decode, endsPrompt: endsPrompt, replay: replay, shared: shared, adapter: nil) { t, out in
            model.embed(tokens[t], into: out)
        }
    }

    /// Runs rows `rows` of a RestoreKV artifact's restore embeddings as one step of the pending
    /// restore pass (`endsReplay` marks its last chunk), with the artifact's LoRA adapter added to
    /// every projection it adapts.
    func forward(restoring artifact: RestoreKVArtifact, rows: Range<Int>, endsReplay: Bool) throws(KVError) {
        let width = artifact.width
        try forward(count: rows.count, decode: false, endsPrompt: endsReplay, replay: true, shared: nil, adapter: artifact) { t, out in
            artifact.embeddings.withUnsafeBufferPointer { e in
                out.update(from: e.baseAddress! + (rows.lowerBound + t) * width, count: width)
            }
        }
    }

    /// The forward pass of ``forward(_:decode:endsPrompt:replay:shared:)`` over `n` inputs that
    /// `embed` writes (input `t`'s hidden-size floats), with `adapter`'s LoRA modules when given.
    private func forward(count n: Int, decode: Bool, endsPrompt: Bool, replay: Bool, shared: SharedPass?,
                         adapter: RestoreKVArtifact?, embed: (Int, UnsafeMutablePointer<Float>) -> Void) throws(KVError) {
        let c = model.config
        precondition(n >= 1 && n <= chunkSize, "forward chunk of \(n) tokens, chunk size \(chunkSize)")
        if Task.isCancelled { throw .cancelled }
        let step = decode ? try compressor.beginDecode()
            : replay ? try compressor.beginReplay(tokenCount: n, endsReplay: endsPrompt)
            : try compressor.beginPrefill(tokenCount: n, endsPrompt: endsPrompt)
        try shared?.begin(step)
        let s = scratch
        let hidden = c.hidden
        let fast = model.mode == .fast
        for t in 0..<n {
            embed(t, s.x + t * hidden)
            s.positions[t] = step.positions[t]
        }

        // Matrices over the same input in one parallel region; the input quantized once. An adapter's
        // LoRA modules of layer `l` add `scaling · B A x` (f32).
        func project(_ l: Int, _ input: UnsafeMutablePointer<Float>,
                     _ jobs: [(matrix: WeightMatrix, y: UnsafeMutablePointer<Float>, module: RestoreKVArtifact.Module)]) {
            let useQ = fast && jobs.contains { $0.matrix.usesQuantizedActivations }
            if useQ { kvk_quantize_act(input, s.xq, n * jobs[0].matrix.cols) }
            WeightMatrix.apply(jobs.map { ($0.matrix, $0.y) }, x: input, xq: useQ ? UnsafePointer(s.xq) : nil, n: n, pool: pool)
            guard let adapter, l < adapter.adapters.count else { return }
            for job in jobs {
                if let lowRank = adapter.adapters[l][job.module] { lowRank.add(to: job.y, input: input, tokens: n, scaling: adapter.scaling) }
            }
        }

        // Decode-step profile: the time since the last mark goes to a phase.
        let timed = decode && stepProfile != nil
        var last = timed ? DispatchTime.now().uptimeNanoseconds : 0
        func mark(_ phase: DecodeStepProfile.Phase, bytes: Int = 0) {
            guard timed else { return }
            let now = DispatchTime.now().uptimeNanoseconds
            stepProfile?.add(phase, seconds: Double(now - last) * 1e-9, bytes: bytes)
            last = now
        }

        let tape = replay ? replayTape : nil
        tape?.positions.append(contentsOf: UnsafeBufferPointer(start: s.positions, count: n))
        func record(_ buffer: inout [Float], _ source: UnsafeMutablePointer<Float>) {
            buffer.append(contentsOf: UnsafeBufferPointer(start: source, count: n * hidden))
        }
        for (l, w) in model.layers.enumerated() {
            if Task.isCancelled { throw .cancelled }
            if let tape { record(&tape.inputs[l], s.x) }
            // Attention block.
            for t in 0..<n {
                kvk_rmsnorm(s.x + t * hidden, w.attnNorm, s.xn + t * hidden, hidden, c.rmsEps)
            }
            mark(.norms)
            project(l, s.xn, [(w.wq, s.q, .q), (w.wk, s.k, .k), (w.wv, s.v, .v)])
            mark(.qkvProjection, bytes: w.wq.byteCount + w.wk.byteCount + w.wv.byteCount)
            s.qPre.update(from: s.q, count: n * hidden)
            model.rope.apply(to: s.q, tokens: n, heads: c.heads, positions: s.positions)
            model.rope.apply(to: s.k, tokens: n, heads: c.kvHeads, positions: s.positions)
            mark(.rope)
            if let tape { record(&tape.queries[l], s.q) }
            let inputs = KVAttentionInputs(values: s.xn, width: hidden)
            if let shared {
                try shared.attend(layer: l, lead: compressor, step: step, queries: s.q, preRoPEQueries: s.qPre,
                                  keys: s.k, values: s.v, output: s.attn, attentionInputs: inputs)
            } else {
                try compressor.attend(layer: l, step: step, queries: s.q, preRoPEQueries: s.qPre, keys: s.k, values: s.v,
                                      output: s.attn, attentionInputs: inputs)
            }
            mark(.attention)
            project(l, s.attn, [(w.wo, s.xn, .o)])
            mark(.outputProjection, bytes: w.wo.byteCount)
            kvk_axpy_f32(1, s.xn, s.x, n * hidden)
            if let tape { record(&tape.mids[l], s.x) }
            // Feed-forward block.
            for t in 0..<n {
                kvk_rmsnorm(s.x + t * hidden, w.ffnNorm, s.xn + t * hidden, hidden, c.rmsEps)
            }
            mark(.norms)
            project(l, s.xn, [(w.gate, s.gate, .gate), (w.up, s.up, .up)])
            mark(.gateUpProjection, bytes: w.gate.byteCount + w.up.byteCount)
            kvk_silu_mul(s.gate, s.up, s.gate, n * c.ffn)
            mark(.activation)
            project(l, s.gate, [(w.down, s.xn, .down)])
            mark(.downProjection, bytes: w.down.byteCount)
            kvk_axpy_f32(1, s.xn, s.x, n * hidden)
        }
        mark(.norms)
        if let tape { record(&tape.output, s.x) }
    }

    /// Computes the logits of token rows `rows` of the last forward pass (at most
    /// `Scratch.logitRows`) into `scratch.logits`, row `r` at `logits + (r - rows.lowerBound) * vocab`.
    func computeLogits(rows: Range<Int>) {
        let c = model.config
        let s = scratch
        let hidden = c.hidden
        precondition(!rows.isEmpty && rows.count <= Scratch.logitRows, "logit rows out of range")
        for (i, t) in rows.enumerated() {
            kvk_rmsnorm(s.x + t * hidden, model.outputNorm, s.xn + i * hidden, hidden, c.rmsEps)
        }
        let out = model.output
        if model.mode == .fast && out.usesQuantizedActivations {
            kvk_quantize_act(s.xn, s.xq, rows.count * hidden)
            WeightMatrix.apply([(out, s.logits)], x: s.xn, xq: s.xq, n: rows.count, pool: pool)
        } else {
            WeightMatrix.apply([(out, s.logits)], x: s.xn, xq: nil, n: rows.count, pool: pool)
        }
    }

    /// The logits of the last token of the last forward pass of `n` tokens.
    func lastLogits(tokenCount n: Int) -> [Float] {
        computeLogits(rows: (n - 1)..<n)
        return Array(UnsafeBufferPointer(start: scratch.logits, count: model.config.vocab))
    }
}
