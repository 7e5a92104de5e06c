/// SnapKV's observation-window vote (kvpress `SnapKVPress.score`).
///
/// With the last `w` prompt queries (each at its own position, causal inside the window):
/// 1. `P[h, r, j]` = softmax over every row of the window query's attention (f32);
/// 2. `s[h, j]` = mean over the window of `P[h, r, j]` (with ``weightsByPosition``, of
///    `P[h, r, j] * p_r`, `p_r` the window query's position: FINCH's compensation for the softmax
///    spreading over more keys later in the prompt), for rows before the window;
/// 3. average pooling, kernel `k`, stride 1, zero padding `k/2`, divisor always `k`
///    (PyTorch `count_include_pad`);
/// 4. mean over the query heads of each KV head's group;
/// 5. rows inside the window get `max + 1` (max over every head of the layer), so they are kept first.
///
/// Paper: Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024
/// (arXiv 2404.14469). References: FasterDecoding/SnapKV, NVIDIA/kvpress `snapkv_press.py`.
public struct SnapKVScorer: KVScorer {
    /// Observation window (prompt queries that vote).
    public let window: Int
    /// Average-pooling kernel (odd; 1: no pooling).
    public let kernelSize: Int
    /// Whether each window query's attention is weighted by its position (``Finch``).
    public let weightsByPosition: Bool

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for `window < 1` or an even / non-positive kernel.
    public init(window: Int = 64, kernelSize: Int = 5, weightsByPosition: Bool = false) throws(KVError) {
        guard window >= 1 else { throw .invalidParameter(name: "window", value: "\(window)", expected: ">= 1") }
        guard kernelSize >= 1, kernelSize % 2 == 1 else {
            throw .invalidParameter(name: "kernelSize", value: "\(kernelSize)", expected: "an odd number >= 1")
        }
        self.window = window
        self.kernelSize = kernelSize
        self.weightsByPosition = weightsByPosition
    }

    /// The buffered window queries.
    public func makeState(shape: KVModelShape) -> KVQueryWindow { KVQueryWindow(size: window, shape: shape) }

    /// Buffers the most recent queries (prompt chunks and decode steps).
    public func observe(_ context: KVLayerContext, state: inout KVQueryWindow) {
        state.record(context)
    }

    /// The window vote.
    public func scores(_ context: KVLayerContext, state: inout KVQueryWindow) -> KVScores {
        let wq = state.count(layer: context.layer)
        let windowStart = state.firstPosition(layer: context.layer) ?? Int32.max
        let block = state.attention(context)
        let weights = state.positions[context.layer].map { weightsByPosition ? Float($0) : 1 }
        let g = context.shape.groupSize
        let k = kernelSize, half = kernelSize / 2
        var heads: [[Float]] = []
        var inWindow: [[Bool]] = []
        var best: Float?
        for m in 0..<context.shape.kvHeads {
            let pos = context.positions(head: m)
            let n = pos.count
            let obs = pos.firstIndex { $0 >= windowStart } ?? n
            var score = [Float](repeating: 0, count: n)
            var s = [Float](repeating: 0, count: obs)
            for h in (m * g)..<(m * g + g) {
                block.probabilities.withUnsafeBufferPointer { p in
                    s.withUnsafeMutableBufferPointer { sb in
                        for j in 0..<obs { sb[j] = 0 }
                        for r in 0..<wq {
                            let row = p.baseAddress! + (h * wq + r) * block.keyStride
                            let w = weights[r]
                            for j in 0..<obs { sb[j] += row[j] * w }
                        }
                        for j in 0..<obs { sb[j] /= Float(wq) }
                    }
                }
                for j in 0..<obs {
                    var acc: Float = 0
                    for i in max(0, j - half)...min(obs - 1, j + half) { acc += s[i] }
                    score[j] += acc / Float(k) / Float(g)
                }
            }
            for j in 0..<obs { best = best.map { max($0, score[j]) } ?? score[j] }
            heads.append(score)
            inWindow.append((0..<n).map { $0 >= obs })
        }
        let pad = (best ?? 0) + 1
        for m in heads.indices { for j in heads[m].indices where inWindow[m][j] { heads[m][j] = pad } }
        return KVScores(heads: heads)
    }
}
