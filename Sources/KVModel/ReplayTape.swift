/// What a replay's forward pass records for its backward pass (``LlamaSession/backpropagateReplay(_:)``):
/// per layer, each replay token's residual stream entering the layer, its post-RoPE queries and its
/// residual stream after the attention block, appended chunk by chunk; and the last layer's output.
final class ReplayTape {
    /// `inputs[l]`: tokens x hidden, the residual stream entering layer `l`.
    var inputs: [[Float]]
    /// `queries[l]`: tokens x (heads x headDim), layer `l`'s post-RoPE queries.
    var queries: [[Float]]
    /// `mids[l]`: tokens x hidden, the residual stream after layer `l`'s attention block.
    var mids: [[Float]]
    /// tokens x hidden, the last layer's output (before the final norm).
    var output: [Float] = []
    /// The replay tokens' positions.
    var positions: [Int32] = []

    init(layers: Int) {
        inputs = Array(repeating: [], count: layers)
        queries = inputs
        mids = inputs
    }

    /// Tokens recorded so far.
    var tokenCount: Int { positions.count }
}
