import CKVKernels

/// Non-causal chunked attention (Compactor's query-agnostic scorer): the prompt is cut into tiles of
/// `tile` tokens; inside each tile every query attends to every key of the tile, future ones
/// included; a key's score is the sum over the tile's queries of its probability, averaged over
/// the query heads of its KV head, times its value's norm, smoothed over neighbouring positions
/// (mean of 3 with zero padding) and z-scored over every head and position of the layer.
///
/// As kvpress computes it: the dot products are **not** scaled by `1 / sqrt(headDim)`; a last,
/// partial tile is padded to `tile` rows: its padded keys take the logit `-1e-9` (not `-inf`) and
/// its padded queries, whose logits are 0 over the real keys, add their almost uniform
/// probabilities to the real keys too. Tiles are aligned at positions 0, `tile`, ... whatever the
/// host's prefill chunks (queries of a partial tile wait for the next chunk). Only the first prompt
/// is scored; rows that came later (a later prompt, decoded tokens) score above every prompt row.
///
/// With ``skipFirst`` / ``skipLast`` (``CompactorScorer``'s sinks) the first and last prompt
/// tokens are left out: tiles start at position `skipFirst`, the last `skipLast` tokens neither
/// query nor are scored (they score above every other row), and the smoothing and the z-score run
/// over the rest.
///
/// Paper: Chari & Van Durme, "Compactor: Calibrated Query-Agnostic KV Cache Compression with
/// Approximate Leverage Scores" (arXiv 2507.08143). Reference: NVIDIA/kvpress
/// `non_causal_attention_press.py` (kept sets equal to kvpress 0.5.5's on the fixture prompt at
/// ratios 0.5 and 0.8).
public struct NonCausalAttentionScorer: KVScorer {
    /// Per layer: the queries of the unfinished tile, the column sums so far, the final scores.
    public struct State: Sendable {
        var pending: [[Float]]
        var pendingStart: [Int]
        var sums: [[[Float]]]
        var final: [[[Float]]?]
    }

    /// Tokens per tile (kvpress default 256).
    public let tile: Int
    /// Initial prompt tokens left out (0).
    public let skipFirst: Int
    /// Final prompt tokens left out (0).
    public let skipLast: Int

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for a tile below 1 or a negative skip.
    public init(tile: Int = 256, skipFirst: Int = 0, skipLast: Int = 0) throws(KVError) {
        guard tile >= 1 else { throw .invalidParameter(name: "tile", value: "\(tile)", expected: ">= 1 tokens") }
        guard skipFirst >= 0, skipLast >= 0 else {
            throw .invalidParameter(name: "skipFirst / skipLast", value: "\(skipFirst) / \(skipLast)", expected: ">= 0 tokens")
        }
        self.tile = tile
        self.skipFirst = skipFirst
        self.skipLast = skipLast
    }

    /// Empty buffers for every layer.
    public func makeState(shape: KVModelShape) -> State {
        State(pending: Array(repeating: [], count: shape.layers), pendingStart: Array(repeating: 0, count: shape.layers),
              sums: Array(repeating: [], count: shape.layers), final: Array(repeating: nil, count: shape.layers))
    }

    /// Buffers the first prompt's queries and runs every completed tile; after the prompt's last
    /// chunk, the final scores.
    public func observe(_ context: KVLayerContext, state: inout State) throws(KVError) {
        guard context.phase == .prefill else { return }
        let l = context.layer, width = context.shape.heads * context.shape.headDim
        if context.isFirstChunk {
            state.pending[l] = []
            state.pendingStart[l] = skipFirst
            state.sums[l] = Array(repeating: [], count: context.shape.heads)
            state.final[l] = nil
        }
        guard state.final[l] == nil else { return }  // a later prompt: nothing to score
        for t in 0..<context.tokenCount where context.positions[t] >= skipFirst {
            state.pending[l].append(contentsOf: UnsafeBufferPointer(start: context.queries + t * context.queryTokenStride,
                                                                    count: width))
        }
        while state.pending[l].count >= (tile + skipLast) * width {  // the last skipLast tokens may end the prompt
            runTile(context, rows: tile, state: &state)
        }
        guard context.isLastChunk else { return }
        state.pending[l].removeLast(min(skipLast * width, state.pending[l].count))
        if !state.pending[l].isEmpty { runTile(context, rows: state.pending[l].count / width, state: &state) }
        state.final[l] = finalScores(context, sums: state.sums[l])
    }

    /// Attention of one tile's queries (the oldest pending ones, `rows` of them) over the keys at the
    /// same positions, added to the column sums.
    private func runTile(_ context: KVLayerContext, rows n: Int, state: inout State) {
        let l = context.layer, d = context.shape.headDim, heads = context.shape.heads
        let g = heads / context.shape.kvHeads, start = state.pendingStart[l]
        var row = [Float](repeating: 0, count: tile)
        // the padded queries' row (logit 0 over the real keys, -1e-9 over the padding), once
        var padRow = [Float](repeating: 0, count: tile)
        for j in n..<tile { padRow[j] = -1e-9 }
        _ = kvk_softmax(&padRow, tile)
        for m in 0..<context.shape.kvHeads {
            let keys = context.cache.head(l, m).keys(start..<(start + n))
            for h in (m * g)..<((m + 1) * g) {
                var sums = state.sums[l][h]
                sums.append(contentsOf: repeatElement(0, count: n))
                for t in 0..<n {
                    state.pending[l].withUnsafeBufferPointer { q in
                        kvk_scores(KVK_F32, q.baseAddress! + t * heads * d + h * d, keys, 4 * d, n, d, 1, &row)
                    }
                    for j in n..<tile { row[j] = -1e-9 }
                    _ = kvk_softmax(&row, tile)
                    for j in 0..<n { sums[start - skipFirst + j] += row[j] }
                }
                if n < tile { for j in 0..<n { sums[start - skipFirst + j] += Float(tile - n) * padRow[j] } }
                state.sums[l][h] = sums
            }
        }
        state.pending[l].removeFirst(n * heads * d)
        state.pendingStart[l] += n
    }

    /// Per KV head and prompt position: group mean of the column sums, times the value norm, mean
    /// of 3 neighbours (zero padded), z-scored over the layer.
    private func finalScores(_ context: KVLayerContext, sums: [[Float]]) -> [[Float]] {
        let d = context.shape.headDim, g = context.shape.heads / context.shape.kvHeads
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { buf.deallocate() }
        var out: [[Float]] = (0..<context.shape.kvHeads).map { m in
            let s = context.cache.head(context.layer, m)
            let n = sums[m * g].count
            let raw: [Float] = (0..<n).map { j in
                var a: Float = 0
                for h in (m * g)..<((m + 1) * g) { a += sums[h][j] }
                s.value(skipFirst + j, into: buf, headDim: d)
                var e: Float = 0
                for i in 0..<d { e += buf[i] * buf[i] }
                return a / Float(g) * e.squareRoot()
            }
            return (0..<n).map { j in ((j > 0 ? raw[j - 1] : 0) + raw[j] + (j + 1 < n ? raw[j + 1] : 0)) / 3 }
        }
        let all = out.joined()
        let count = Double(all.count)
        let mean = all.reduce(0.0) { $0 + Double($1) } / count
        let variance = all.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / max(count - 1, 1)
        let std = max(variance.squareRoot(), 1e-6)
        for m in out.indices { out[m] = out[m].map { Float((Double($0) - mean) / std) } }
        return out
    }

    /// The final score of each row's position; rows left out (skipped, or newer than the first
    /// prompt) score above all.
    /// - Throws: `KVError.invalidState` before the first prompt has been scored.
    public func scores(_ context: KVLayerContext, state: inout State) throws(KVError) -> KVScores {
        guard let final = state.final[context.layer] else {
            throw .invalidState("NonCausalAttention scores a prompt once its last chunk has been seen; "
                + "it cannot score layer \(context.layer) before that")
        }
        return KVScores(heads: final.indices.map { m in
            context.positions(head: m).map { p in
                let i = Int(p) - skipFirst
                return i >= 0 && i < final[m].count ? final[m][i] : .greatestFiniteMagnitude
            }
        })
    }
}
