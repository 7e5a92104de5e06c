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

    init(layers: Int, kvHeads: Int, settings: ZipCacheSettings) {
        self.settings = settings
        mass = Array(repeating: Array(repeating: [], count: kvHeads), count: layers)
    }

    func reset() {
        for l in mass.indices { for m in mass[l].indices { mass[l][m] = [] } }
    }

    /// A prefill step of `context`'s layer: its probe queries (the prompt's last
    /// ``ZipCacheSettings/probeFraction`` of positions when the step ends the prompt, and the
    /// random probe positions) attend over the layer's cache (the tiled prefill attention, whose
    /// column sums are their probabilities summed over the probes and each KV head's query heads),
    /// and each entry's mass grows by its column sum.
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
        let width = shape.heads * shape.headDim
        let counts = (0..<shape.kvHeads).map { cache.count(layer: l, head: $0) }
        let stride = counts.max() ?? 0
        guard stride > 0 else { return }
        var queries = [Float](repeating: 0, count: probes.count * width)
        for (i, t) in probes.enumerated() {
            for k in 0..<width { queries[i * width + k] = context.queries[t * context.queryTokenStride + k] }
        }
        var output = queries
        var sums = [Float](repeating: 0, count: shape.kvHeads * stride)
        cache.attendPrefill(layer: l, queries: queries, queryCount: probes.count, queryTokenStride: width,
                            queryPositions: probes.map { context.positions[$0] }, heads: shape.heads, output: &output,
                            columnSums: &sums, columnSumStride: stride, pool: context.pool)
        for m in 0..<shape.kvHeads {
            if mass[l][m].count < end { mass[l][m] += [Float](repeating: 0, count: end - mass[l][m].count) }
            for (j, p) in cache.positions(layer: l, head: m).enumerated() { mass[l][m][Int(p)] += sums[m * stride + j] }
        }
    }

    /// The end of a prompt in `layer`: every buffered entry of each head is split by its normalized
    /// score (mass / number of queries that see it) and quantized as one block.
    func quantizePrompt(cache: KVCache, layer l: Int) {
        let end = cache.nextPosition(layer: l)
        for m in 0..<cache.kvHeads {
            let n = cache.bufferedCount(layer: l, head: m)
            let positions = cache.positions(layer: l, head: m).suffix(n)
            let scores = positions.map { position -> Float in
                let p = Int(position)
                return p < mass[l][m].count ? mass[l][m][p] / Float(end - p) : 0
            }
            cache.storeBlock(layer: l, head: m, salient: salient(scores))
            mass[l][m] = []
        }
    }

    /// A decode step of `context`'s layer: each head whose buffer holds ``ZipCacheSettings/streamingGap``
    /// entries splits them by the step query's attention (its column sums: summed over the head's
    /// query heads) and quantizes them as one block.
    func decodeStep(_ context: KVLayerContext) {
        let cache = context.cache, l = context.layer, shape = context.shape
        let full = (0..<shape.kvHeads).filter { cache.bufferedCount(layer: l, head: $0) >= settings.streamingGap }
        guard !full.isEmpty else { return }
        let counts = (0..<shape.kvHeads).map { cache.count(layer: l, head: $0) }
        let stride = counts.max() ?? 0
        var sums = [Float](repeating: 0, count: shape.kvHeads * stride)
        var output = [Float](repeating: 0, count: shape.heads * shape.headDim)
        cache.attend(layer: l, query: context.queries + (context.tokenCount - 1) * context.queryTokenStride,
                     heads: shape.heads, output: &output, columnSums: &sums, columnSumStride: stride, pool: context.pool)
        for m in full {
            let n = cache.bufferedCount(layer: l, head: m)
            let scores = Array(sums[(m * stride + counts[m] - n)..<(m * stride + counts[m])])
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
