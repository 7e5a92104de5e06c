/// KVzip's budget rule, shared by ``KVzip`` and ``FastKVzip``: the lowest-scoring entries of the prompt
/// (`scores[layer][head][j]`, the first `length` rows of every head) are evicted over **all layers and
/// KV heads together** (or per layer with `layerwise`), so layers and heads keep different counts.
///
/// With `.compressionRatio(r)` the `Int(count * r)` lowest entries go; a `.tokens` or `.bytes` budget
/// keeps its per-head capacity times the heads counted. Ties go in index order (layer, head,
/// position); every head keeps at least its best entry; entries after the prompt stay. `reserved`
/// entries per head after the prompt count against the budget (RestoreKV's restore entries, as
/// kvpress raises the ratio by `reserved / length`).
enum KVGlobalEviction {
    static func apply(scores: [[[Float]]], length: Int, budget: KVBudget, layerwise: Bool, cache: KVCache,
                      shape: KVModelShape, reserved: Int = 0) throws(KVError) {
        let perLayer = shape.kvHeads * length
        let capacity = budget.fixedCapacity(cache: cache).map { max($0 - reserved, 0) }
        // Entries evicted: per layer (layerwise) or over all of them; ties go in index order.
        func evicted(among count: Int) -> Int {
            if let capacity { return count - count / length * min(capacity, length) }
            guard case .compressionRatio(let r) = budget else { return 0 }
            return Int(Double(count) * min(1, r + Double(reserved) / Double(length)))
        }
        var drop = Array(repeating: Array(repeating: [Bool](repeating: false, count: length), count: shape.kvHeads),
                         count: shape.layers)
        let groups = layerwise ? (0..<shape.layers).map { $0..<($0 + 1) } : [0..<shape.layers]
        for layers in groups {
            var order: [(score: Float, index: Int)] = []
            order.reserveCapacity(layers.count * perLayer)
            for l in layers {
                for m in 0..<shape.kvHeads {
                    for j in 0..<length { order.append((scores[l][m][j], (l * shape.kvHeads + m) * length + j)) }
                }
            }
            order.sort { $0.score < $1.score || ($0.score == $1.score && $0.index < $1.index) }
            for e in order.prefix(evicted(among: order.count)) {
                drop[e.index / perLayer][e.index / length % shape.kvHeads][e.index % length] = true
            }
        }
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                var kept = (0..<length).filter { !drop[l][m][$0] }
                if kept.isEmpty, let best = scores[l][m].indices.max(by: { scores[l][m][$0] < scores[l][m][$1] }) {
                    kept = [best]
                }
                // Entries after the prompt (none before decoding) stay.
                let total = cache.count(layer: l, head: m)
                try cache.retain(layer: l, head: m, indices: kept + Array(length..<total))
            }
        }
    }
}
