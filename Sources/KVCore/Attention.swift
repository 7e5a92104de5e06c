import CKVKernels

/// Attention over ragged KV heads: causal prefill (tiled, online softmax), single-token decode and
/// observation probabilities for scoring policies.
///
/// Shapes: `heads` query heads share `kv.count` KV heads (GQA): query head `h` reads
/// `kv[h / (heads / kv.count)]`. Queries are f32, post-RoPE, token `t` head `h` at
/// `queries + t * queryTokenStride + h * headDim`. Causality is by original position: row `j` of a
/// head is visible to a query at position `p` iff `positions[j] <= p`; rows are in ascending
/// position order.
///
/// `scale` defaults to ``defaultScale(headDim:)`` and `pool` to nil (the calling thread; pass
/// `ThreadPool.shared` or your own pool to use several cores).
///
/// Misuse (heads not a multiple of `kv.count`, a block key type with `headDim % 32 != 0`, a
/// query stride smaller than `heads * headDim`) is a programmer error: `precondition`.
public enum Attention {
    /// Keys per tile in prefill and observation (fits L1/L2 for head dims up to 256).
    static let keyTile = 128
    /// Query tokens per tile in prefill.
    static let queryTile = 16

    /// The softmax scale used when none is given: `1 / sqrt(headDim)`.
    public static func defaultScale(headDim: Int) -> Float { 1 / Float(headDim).squareRoot() }

    static func check(heads: Int, headDim: Int, parts: [[KVHeadView]]) {
        precondition(!parts.isEmpty && heads >= parts.count && heads % parts.count == 0,
                     "\(heads) query heads cannot share \(parts.count) KV heads")
        precondition(headDim > 0, "head dimension must be positive")
        for head in parts {
            for v in head {
                let keyBlock = v.keyGroups == nil ? v.keyType.blockSize : 32
                precondition(headDim % keyBlock == 0 && headDim % v.valueType.blockSize == 0,
                             "head dimension \(headDim) is not a multiple of the \(v.keyType)/\(v.valueType) block")
            }
        }
    }
}
