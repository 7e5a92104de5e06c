/// The attention inputs of the tokens a hook sees: each token's hidden state after the layer's
/// input norm (what the query, key and value projections read), for scorers that predict from it
/// (``KVzapScorer``). Valid only during the hook call, like the queries.
public struct KVAttentionInputs {
    /// Token `t`'s input at `values + t * width`.
    public let values: UnsafePointer<Float>
    /// Floats per token (the model's hidden size).
    public let width: Int

    /// Wraps the host's buffer.
    public init(values: UnsafePointer<Float>, width: Int) {
        precondition(width >= 1, "attention inputs need at least one float per token")
        self.values = values
        self.width = width
    }
}
