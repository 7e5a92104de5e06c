/// The weights of one decoder layer.
struct LlamaLayerWeights: @unchecked Sendable {
    let attnNorm: UnsafePointer<Float>
    let ffnNorm: UnsafePointer<Float>
    let wq: WeightMatrix
    let wk: WeightMatrix
    let wv: WeightMatrix
    let wo: WeightMatrix
    let gate: WeightMatrix
    let up: WeightMatrix
    let down: WeightMatrix
}
