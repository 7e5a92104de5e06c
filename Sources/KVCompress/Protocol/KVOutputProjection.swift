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
        let perHead = valueOutputNorms(context, head: m, rows: 0..<context.count(head: m), order: 1)
        let g = Float(perHead.count)
        return perHead.dropFirst().reduce(perHead[0].map { $0 / g }) { mean, norms in zip(mean, norms).map { $0 + $1 / g } }
    }

    /// For rows `rows` of KV head `m` in the context's layer and each query head `h` of its group
    /// (outer index `h - m * groupSize`): `||W_o^h v_j||`, the L1 (`order` 1) or L2 (`order` 2) norm
    /// of what value `j` writes into the output through head `h`'s slice of `W_o`, in f32.
    /// - Complexity: O(rows x groupSize x headDim x hiddenSize).
    func valueOutputNorms(_ context: KVLayerContext, head m: Int, rows: Range<Int>, order: Int) -> [[Float]] {
        precondition(order == 1 || order == 2, "norm order \(order) is not 1 or 2")
        let d = context.shape.headDim, g = context.shape.groupSize, width = context.shape.heads * d
        let n = rows.count
        let values = context.cache.head(context.layer, m).values(rows)
        var slice = [Float](repeating: 0, count: hiddenSize * d)   // W_o's columns of head h
        var projected = [Float](repeating: 0, count: n * hiddenSize)
        return ((m * g)..<(m * g + g)).map { h in
            for r in 0..<hiddenSize { for i in 0..<d { slice[r * d + i] = weights[r * width + h * d + i] } }
            kvk_matmul(KVK_F32, slice, hiddenSize, d, values, n, &projected, hiddenSize)
            return projected.withUnsafeBufferPointer { p in
                (0..<n).map { j in
                    let row = UnsafeBufferPointer(rebasing: p[(j * hiddenSize)..<((j + 1) * hiddenSize)])
                    return order == 1 ? row.reduce(0) { $0 + abs($1) } : row.reduce(0) { $0 + $1 * $1 }.squareRoot()
                }
            }
        }
    }
}
