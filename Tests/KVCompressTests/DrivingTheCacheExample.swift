import KVCompress

// The program of the "Driving the cache" article, verbatim between the markers (a test checks that
// the article's code block is this text, and another runs it).
// BEGIN ARTICLE
/// A toy runtime: an attention-only model with random weights, driven the way a real inference
/// runtime drives KVCompress. Returns the cache after a 300-token prompt and 20 generated tokens.
func drivingTheCache(policy: some KVCachePolicy) throws -> KVCache {
    let layers = 2, heads = 4, kvHeads = 2, headDim = 32
    let width = heads * headDim, kvWidth = kvHeads * headDim
    let rope = try RoPE(headDim: headDim, base: 10_000, pairing: .neox)
    let shape = try KVModelShape(layers: layers, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                 rope: rope, contextLength: 4096)
    let compressor = try KVCompressor(policy: policy, shape: shape)   // owns a new f16 cache

    // Random weights stand in for a model's: an embedding and the q, k, v projections per layer.
    var seed: UInt64 = 7
    func random(_ count: Int) -> [Float] {
        (0..<count).map { _ in
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(seed >> 40) / Float(1 << 24) - 0.5
        }
    }
    let embedding = random(1000 * width)
    let wq = (0..<layers).map { _ in random(width * width) }
    let wk = (0..<layers).map { _ in random(kvWidth * width) }
    let wv = (0..<layers).map { _ in random(kvWidth * width) }
    func project(_ w: [Float], _ x: [Float], rows: Int) -> [Float] {
        let tokens = x.count / width
        var y = [Float](repeating: 0, count: tokens * rows)
        for t in 0..<tokens {
            for r in 0..<rows {
                var s: Float = 0
                for c in 0..<width { s += w[r * width + c] * x[t * width + c] }
                y[t * rows + r] = s
            }
        }
        return y
    }

    // One forward pass (a prompt chunk or a decode step) over the tokens of `step`.
    func forward(_ tokens: [Int], _ step: KVStep) throws {
        var x = tokens.flatMap { embedding[($0 * width)..<($0 * width + width)] }
        for layer in 0..<layers {
            var q = project(wq[layer], x, rows: width)
            var k = project(wk[layer], x, rows: kvWidth)
            let v = project(wv[layer], x, rows: kvWidth)
            let qBeforeRoPE = q
            rope.apply(to: &q, heads: heads, positions: step.positions)     // the cache's positions
            rope.apply(to: &k, heads: kvHeads, positions: step.positions)
            var attention = [Float](repeating: 0, count: x.count)
            try compressor.attend(layer: layer, step: step, queries: q, preRoPEQueries: qBeforeRoPE,
                                  keys: k, values: v, output: &attention)
            for i in x.indices { x[i] += attention[i] }                       // residual
        }
    }

    // Prefill a 300-token prompt in chunks of 128; the policy compresses after the last chunk.
    let prompt = (0..<300).map { ($0 * 37) % 1000 }
    var start = 0
    while start < prompt.count {
        let end = min(start + 128, prompt.count)
        try forward(Array(prompt[start..<end]),
                    try compressor.beginPrefill(tokenCount: end - start, endsPrompt: end == prompt.count))
        start = end
    }
    // Generate 20 tokens (here: arbitrary ids; a real runtime samples them from its logits).
    for token in 0..<20 {
        try forward([token], try compressor.beginDecode())
    }
    return compressor.cache
}
// END ARTICLE
