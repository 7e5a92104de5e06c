import KVCore

/// The saliency a ``KVCompressor`` computes for a ZipCache cache (``KVEntryFormat/zipCache``):
/// probe attention while a prompt is prefilled, normalized at its end to split and quantize every
/// buffered entry; in decode, the step's attention over a full buffer of ``ZipCacheSettings/streamingGap``
/// entries. See ``ZipCacheSettings`` for the procedure.
final class ZipCacheSaliency {
    let settings: ZipCacheSettings
    /// Per layer and KV head, the probe attention mass received by the entry at each position of
    /// the prompt being prefilled (empty between prompts).
    private var mass: [[[Float]]]
    /// Probe queries attended at once (bounds the probabilities' buffer).
    private static let probeBatch = 32

    init(layers: Int, kvHeads: Int, settings: ZipCacheSettings) {
        self.settings = settings
        mass = Array(repeating: Array(repeating: [], count: kvHeads), count: layers)
    }

    func reset() {
        for l in mass.indices { for m in mass[l].indices { mass[l][m] = [] } }
    }

    /// A prefill step of `context`'s layer: its probe queries (the prompt's last
    /// ``ZipCacheSettings/probeFraction`` of positions when the step ends the prompt, and the
    /// random probe positions) attend over the layer's cache, and their probabilities, summed over
    /// the probes and each KV head's query heads, add to each entry's mass.
    func observePrompt(_ context: KVLayerContext) {
        let cache = context.cache, l = context.layer
        let end = context.totalLength
        let recentFrom = context.isLastChunk ? end - Int((settings.probeFraction * Double(end)).rounded(.up)) : Int.max
        let probes = (0..<context.tokenCount).filter {
            let p = Int(context.positions[$0])
            return p >= recentFrom || settings.isRandomProbe(p)
        }
        guard !probes.isEmpty else { return }
        let shape = context.shape
        let heads = shape.heads, d = shape.headDim, g = heads / shape.kvHeads
        let counts = (0..<shape.kvHeads).map { cache.count(layer: l, head: $0) }
        let stride = counts.max() ?? 0
        guard stride > 0 else { return }
        let positions = (0..<shape.kvHeads).map { cache.positions(layer: l, head: $0) }
        for m in 0..<shape.kvHeads where mass[l][m].count < end {
            mass[l][m] += [Float](repeating: 0, count: end - mass[l][m].count)
        }
        let width = heads * d
        var batchStart = 0
        while batchStart < probes.count {
            let batch = Array(probes[batchStart..<min(probes.count, batchStart + Self.probeBatch)])
            batchStart += batch.count
            let nq = batch.count
            var q = [Float](repeating: 0, count: nq * width)
            var qp = [Int32](repeating: 0, count: nq)
            for (i, t) in batch.enumerated() {
                for k in 0..<width { q[i * width + k] = context.queries[t * context.queryTokenStride + k] }
                qp[i] = context.positions[t]
            }
            var probs = [Float](repeating: 0, count: heads * nq * stride)
            cache.observe(layer: l, queries: q, queryCount: nq, queryTokenStride: width, queryPositions: qp,
                          heads: heads, output: &probs, outputKeyStride: stride, pool: context.pool)
            for m in 0..<shape.kvHeads {
                for h in (m * g)..<((m + 1) * g) {
                    for t in 0..<nq {
                        let row = (h * nq + t) * stride
                        for j in 0..<counts[m] { mass[l][m][Int(positions[m][j])] += probs[row + j] }
                    }
                }
            }
        }
    }

    /// The end of a prompt in `layer`: every buffered entry of each head is split by its normalized
    /// score (mass / number of queries that see it) and quantized as one block.
    func quantizePrompt(cache: KVCache, layer l: Int) {
        let end = cache.nextPosition(layer: l)
        for m in 0..<cache.kvHeads {
            let n = cache.bufferedCount(layer: l, head: m)
            let first = cache.count(layer: l, head: m) - n
            let scores = (first..<(first + n)).map { j -> Float in
                let p = Int(cache.head(l, m).position(j))
                return p < mass[l][m].count ? mass[l][m][p] / Float(end - p) : 0
            }
            cache.storeBlock(layer: l, head: m, salient: salient(scores))
            mass[l][m] = []
        }
    }

    /// A decode step of `context`'s layer: each head whose buffer holds ``ZipCacheSettings/streamingGap``
    /// entries splits them by the step query's attention (summed over the head's query heads) and
    /// quantizes them as one block.
    func decodeStep(_ context: KVLayerContext) {
        let cache = context.cache, l = context.layer, shape = context.shape
        let full = (0..<shape.kvHeads).filter { cache.bufferedCount(layer: l, head: $0) >= settings.streamingGap }
        guard !full.isEmpty else { return }
        let heads = shape.heads, g = heads / shape.kvHeads
        let counts = (0..<shape.kvHeads).map { cache.count(layer: l, head: $0) }
        let stride = counts.max() ?? 0
        var probs = [Float](repeating: 0, count: heads * stride)
        let last = context.tokenCount - 1
        cache.observe(layer: l, queries: context.queries + last * context.queryTokenStride, queryCount: 1,
                      queryTokenStride: context.queryTokenStride, queryPositions: context.positions + last, heads: heads,
                      output: &probs, outputKeyStride: stride, pool: context.pool)
        for m in full {
            let n = cache.bufferedCount(layer: l, head: m)
            let first = counts[m] - n
            let scores = (first..<(first + n)).map { j in
                ((m * g)..<((m + 1) * g)).reduce(Float(0)) { $0 + probs[$1 * stride + j] }
            }
            cache.storeBlock(layer: l, head: m, salient: salient(scores))
        }
    }

    /// Which of the entries with `scores` are salient: all but the ``ZipCacheSettings/unimportantRatio``
    /// with the lowest scores (ties: the earlier entry is the less salient).
    func salient(_ scores: [Float]) -> [Bool] {
        let low = settings.unimportantCount(scores.count)
        var result = [Bool](repeating: true, count: scores.count)
        let order = scores.indices.sorted { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
        for i in order.prefix(low) { result[i] = false }
        return result
    }
}
