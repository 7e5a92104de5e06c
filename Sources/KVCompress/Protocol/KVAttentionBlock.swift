/// Attention probabilities of a block of queries over one layer's cache rows, as
/// `Attention.observe` produces them.
///
/// Entry (query head `h`, query `t`, row `j`) is the softmax weight of query `t` of head `h` on row
/// `j` of KV head `h / groupSize`; rows at positions after the query's position are exactly 0.
public struct KVAttentionBlock: Sendable {
    /// Raw probabilities: `(h * queryCount + t) * keyStride + j`.
    public var probabilities: [Float]
    /// Query heads.
    public let heads: Int
    /// Queries in the block.
    public let queryCount: Int
    /// Row stride (the largest head count of the layer).
    public let keyStride: Int

    /// Creates a block from raw probabilities.
    public init(probabilities: [Float], heads: Int, queryCount: Int, keyStride: Int) {
        precondition(probabilities.count >= heads * queryCount * keyStride)
        self.probabilities = probabilities
        self.heads = heads
        self.queryCount = queryCount
        self.keyStride = keyStride
    }

    /// The probability of query `query` of head `head` on row `row`.
    @inlinable
    public subscript(head: Int, query: Int, row: Int) -> Float {
        probabilities[(head * queryCount + query) * keyStride + row]
    }
}
