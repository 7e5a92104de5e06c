import CKVKernels

/// Knorm: `score = -||k||_2` per entry (keys with small norms tend to receive high attention),
/// computed in f32 as kvpress 0.5.5 does.
///
/// Paper: Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
/// EMNLP 2024 (arXiv 2406.11430). Reference: NVIDIA/kvpress `knorm_press.py`.
public struct KnormScorer: KVStatelessScorer {
    /// Creates the scorer (no parameters).
    public init() {}

    /// `-||k_j||` for every row.
    public func scores(_ context: KVLayerContext) -> KVScores {
        let d = context.shape.headDim
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { buf.deallocate() }
        return KVScores(heads: (0..<context.shape.kvHeads).map { m in
            let s = context.cache.head(context.layer, m)
            return (0..<s.count).map { j in
                s.key(j, into: buf, headDim: d)
                return -kvk_dot_f32(buf, buf, d).squareRoot()
            }
        })
    }
}
