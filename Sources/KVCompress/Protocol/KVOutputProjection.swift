import CKVKernels

/// A layer's attention output projection `W_o`: `hiddenSize` rows of `heads x headDim` f32 columns
/// (row-major, the output is `o = W_o x` with `x` the heads' attention outputs side by side), which
/// output-aware selection (``CriticalSelector``) reads through ``KVLayerContext/outputProjection()``.
/// A host provides it by setting ``KVCompressor/outputProjection``.
public struct KVOutputProjection: Sendable {
    /// The model's hidden size (rows of `W_o`).
    public let hiddenSize: Int
    /// `hiddenSize x (heads * headDim)` floats, row-major.
    public let weights: [Float]

    /// Wraps a projection matrix.
    /// - Throws: `KVError.shapeMismatch` unless `weights` holds `hiddenSize x (heads * headDim)`
    ///   floats for `shape`.
    public init(hiddenSize: Int, weights: [Float], shape: KVModelShape) throws(KVError) {
        guard hiddenSize >= 1, weights.count == hiddenSize * shape.heads * shape.headDim else {
            throw .shapeMismatch("an output projection of \(weights.count) floats for hidden size \(hiddenSize): expected "
                + "\(max(hiddenSize, 0)) x \(shape.heads) heads x \(shape.headDim) dims")
        }
        self.hiddenSize = hiddenSize
        self.weights = weights
    }

    /// For every row `j` of KV head `m` in the context's layer: the mean over the head's query group
    /// of `||W_o^h v_j||_1`, the L1 norm of what the value writes into the output through query
    /// head `h`'s slice of `W_o` (kvpress `CriticalKVPress.vwl1norm`), in f32.
    /// - Complexity: O(rows x heads x headDim x hiddenSize).
    func valueOutputNorms(_ context: KVLayerContext, head m: Int) -> [Float] {
        let d = context.shape.headDim, g = context.shape.groupSize, width = context.shape.heads * d
        let s = context.cache.head(context.layer, m)
        let n = s.count
        let values = s.values(0..<n)
        var norms = [Float](repeating: 0, count: n)
        var slice = [Float](repeating: 0, count: hiddenSize * d)   // W_o's columns of head h
        var projected = [Float](repeating: 0, count: n * hiddenSize)
        for h in (m * g)..<(m * g + g) {
            for r in 0..<hiddenSize { for i in 0..<d { slice[r * d + i] = weights[r * width + h * d + i] } }
            kvk_matmul(KVK_F32, slice, hiddenSize, d, values, n, &projected, hiddenSize)
            projected.withUnsafeBufferPointer { p in
                for j in 0..<n {
                    var sum: Float = 0
                    for r in 0..<hiddenSize { sum += abs(p[j * hiddenSize + r]) }
                    norms[j] += sum / Float(g)
                }
            }
        }
        return norms
    }
}
