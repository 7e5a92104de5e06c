/// KeyDiff: `score = -cos(k_j, a)` with `a` the mean of the head's unit-normalized keys: keys least
/// similar to the average direction are kept. Needs no queries or attention.
///
/// Unit-normalization divides by `max(||k||, 1e-12)`; the cosine by `max(||k|| ||a||, 1e-8)`, so zero
/// keys are safe. Paper: Park et al., "KeyDiff: Key Similarity-Based KV Cache Eviction for
/// Long-Context LLM Inference in Resource-Constrained Environments" (arXiv 2504.15364).
/// Reference: NVIDIA/kvpress `keydiff_press.py`.
public struct KeyDiffScorer: KVStatelessScorer {
    /// Creates the scorer (no parameters).
    public init() {}

    /// `-cos(k_j, mean_i normalize(k_i))` for every row.
    public func scores(_ context: KVLayerContext) -> KVScores {
        let d = context.shape.headDim
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { buf.deallocate() }
        return KVScores(heads: (0..<context.shape.kvHeads).map { m in
            let s = context.cache.head(context.layer, m)
            let n = s.count
            guard n > 0 else { return [] }
            var keys = [Float](repeating: 0, count: n * d)
            var norms = [Float](repeating: 0, count: n)
            var anchor = [Float](repeating: 0, count: d)
            for j in 0..<n {
                s.key(j, into: buf, headDim: d)
                var ss: Float = 0
                for i in 0..<d {
                    keys[j * d + i] = buf[i]
                    ss += buf[i] * buf[i]
                }
                norms[j] = ss.squareRoot()
                let inv = 1 / max(norms[j], 1e-12)
                for i in 0..<d { anchor[i] += buf[i] * inv }
            }
            var an: Float = 0
            for i in 0..<d {
                anchor[i] /= Float(n)
                an += anchor[i] * anchor[i]
            }
            an = an.squareRoot()
            return (0..<n).map { j in
                var dot: Float = 0
                for i in 0..<d { dot += keys[j * d + i] * anchor[i] }
                return -dot / max(norms[j] * an, 1e-8)
            }
        })
    }
}
