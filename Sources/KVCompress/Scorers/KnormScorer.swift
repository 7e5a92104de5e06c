import CKVKernels

/// Knorm: `score = -||k||_2` per entry (keys with small norms tend to receive high attention),
/// computed in f32 as kvpress 0.5.5 does.
///
/// A key's norm never changes, so the state remembers each position's score: at decode time only
/// new entries are measured. (Scores are keyed by position: do not combine with in-cache
/// re-positioning.)
///
/// Paper: Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression",
/// EMNLP 2024 (arXiv 2406.11430). Reference: NVIDIA/kvpress `knorm_press.py`.
public struct KnormScorer: KVScorer {
    /// Creates the scorer (no parameters).
    public init() {}

    /// Remembered scores per layer, KV head and position (NaN: not measured yet).
    public struct State: Sendable {
        var byPosition: [[[Float]]]
    }

    /// Empty memory.
    public func makeState(shape: KVModelShape) -> State {
        State(byPosition: Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers))
    }

    /// `-||k_j||` for every row.
    public func scores(_ context: KVLayerContext, state: inout State) -> KVScores {
        let d = context.shape.headDim
        let l = context.layer
        if context.phase == .prefill && context.isFirstChunk {
            for m in state.byPosition[l].indices { state.byPosition[l][m].removeAll(keepingCapacity: true) }
        }
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { buf.deallocate() }
        return KVScores(heads: (0..<context.shape.kvHeads).map { m in
            let s = context.cache.head(l, m)
            let need = Int(s.lastPosition ?? -1) + 1
            if state.byPosition[l][m].count < need {
                state.byPosition[l][m].append(contentsOf: repeatElement(.nan, count: need - state.byPosition[l][m].count))
            }
            return state.byPosition[l][m].withUnsafeMutableBufferPointer { memo in
                (0..<s.count).map { j in
                    let p = Int(s.position(j))
                    if memo[p].isNaN {
                        s.key(j, into: buf, headDim: d)
                        memo[p] = -kvk_dot_f32(buf, buf, d).squareRoot()
                    }
                    return memo[p]
                }
            }
        })
    }
}
