import CKVKernels

/// Attention over ragged KV heads: causal prefill (tiled, online softmax), single-token decode and
/// observation probabilities for scoring policies.
///
/// Shapes: `heads` query heads share `kv.count` KV heads (GQA): query head `h` reads
/// `kv[h / (heads / kv.count)]`. Queries are f32, post-RoPE, token `t` head `h` at
/// `queries + t * queryTokenStride + h * headDim`. Causality is by original position: row `j` of a
/// head is visible to a query at position `p` iff `positions[j] <= p`; rows are in ascending
/// position order (within each part of a head whose entries live in several parts).
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

    /// `out[i] += weight * x[i] * c[i]` for `i < d`: a part's weighted values times its value
    /// channel scales (``KVHeadView/valueChannelScales``), in decode's merge and prefill's tiles.
    @inline(__always)
    static func addChannelScaled(_ x: UnsafePointer<Float>, scales c: UnsafePointer<Float>, weight: Float,
                                 to out: UnsafeMutablePointer<Float>, count d: Int) {
        for i in 0..<d { out[i] += weight * x[i] * c[i] }
    }

    /// Reorders one head's per-row results (`row[0 ..< rows]`) from its parts' concatenation to
    /// head-row order when a part lists its head rows (``KVHeadView/headRows``); nothing otherwise.
    static func toHeadOrder(_ parts: [KVHeadView], _ row: UnsafeMutablePointer<Float>) {
        guard parts.contains(where: { $0.headRows != nil }) else { return }
        let n = parts.reduce(0) { $0 + $1.count }
        let copy = [Float](UnsafeBufferPointer(start: row, count: n))
        var offset = 0
        for v in parts {
            if let h = v.headRows {
                for j in 0..<v.count { row[Int(h[j])] = copy[offset + j] }
            } else {
                for j in 0..<v.count { row[offset + j] = copy[offset + j] }
            }
            offset += v.count
        }
    }

    static func check(heads: Int, headDim: Int, parts: [[KVHeadView]]) {
        precondition(!parts.isEmpty && heads >= parts.count && heads % parts.count == 0,
                     "\(heads) query heads cannot share \(parts.count) KV heads")
        precondition(headDim > 0, "head dimension must be positive")
        for head in parts {
            for v in head {
                let keyBlock = v.keyGroups == nil ? v.keyType.blockSize : 32
                precondition(headDim % keyBlock == 0 && headDim % v.valueType.blockSize == 0,
                             "head dimension \(headDim) is not a multiple of the \(v.keyType)/\(v.valueType) block")
                precondition(v.keyChannelCount % v.keyType.blockSize == 0 && v.keyChannelCount <= headDim,
                             "\(v.keyChannelCount) kept key channels: not a multiple of the \(v.keyType) block or above headDim")
            }
        }
    }
}
