/// The most recent prompt queries of each layer, buffered across prefill chunks for scorers that
/// vote with an observation window (SnapKV, PyramidKV).
public struct KVQueryWindow: Sendable {
    /// Queries kept per layer.
    public let size: Int
    let floatsPerToken: Int
    var queries: [[Float]]
    var positions: [[Int32]]

    /// Creates empty buffers for every layer.
    public init(size: Int, shape: KVModelShape) {
        self.size = size
        floatsPerToken = shape.heads * shape.headDim
        queries = Array(repeating: [], count: shape.layers)
        positions = Array(repeating: [], count: shape.layers)
    }

    /// Appends the context's queries (prefill) and keeps the last ``size``; a new sequence
    /// (first chunk) starts empty.
    public mutating func record(_ context: KVLayerContext) {
        let l = context.layer
        if context.isFirstChunk {
            queries[l].removeAll(keepingCapacity: true)
            positions[l].removeAll(keepingCapacity: true)
        }
        let take = min(size, context.tokenCount)
        let first = context.tokenCount - take
        for t in first..<context.tokenCount {
            let q = context.queries + t * context.queryTokenStride
            queries[l].append(contentsOf: UnsafeBufferPointer(start: q, count: floatsPerToken))
            positions[l].append(context.positions[t])
        }
        let excess = positions[l].count - size
        if excess > 0 {
            queries[l].removeFirst(excess * floatsPerToken)
            positions[l].removeFirst(excess)
        }
    }

    /// Number of buffered queries of `layer`.
    public func count(layer: Int) -> Int { positions[layer].count }

    /// Attention of the buffered queries of the context's layer over its rows.
    public func attention(_ context: KVLayerContext) -> KVAttentionBlock {
        let l = context.layer
        return queries[l].withUnsafeBufferPointer { q in
            positions[l].withUnsafeBufferPointer { p in
                context.attention(queries: q.baseAddress!, count: p.count, tokenStride: floatsPerToken,
                                  positions: p.baseAddress!)
            }
        }
    }

    /// Position of the oldest buffered query of `layer`.
    public func firstPosition(layer: Int) -> Int32? { positions[layer].first }
}
