import CKVKernels
import Foundation

/// KVzap's trained surrogate: for each layer, a linear map or a two-layer GELU MLP from a token's
/// attention input (its hidden state after the layer's input norm) to one score per KV head, trained
/// to predict KVzip+'s importance (log-scale; the published models are used with a threshold of
/// about -4).
///
/// Read from the published format (`nvidia/KVzap-linear-<model>` / `nvidia/KVzap-mlp-<model>` on
/// Hugging Face, kvpress's `KVzapModel`): a directory with `config.json` (`input_dim`, `output_dim`,
/// `n_modules`, `hidden_dim` null for the linear model) and `model.safetensors`
/// (`layers.{i}.weight` / `.bias`, or `layers.{i}.0.*` and `layers.{i}.2.*` for the MLP; F32, F16 or
/// BF16). Surrogates are published only for some larger models; none exists for the default model.
///
/// Paper: "KVzap" (arXiv 2601.07891). Reference: NVIDIA/kvpress `kvzap_press.py`.
public struct KVzapSurrogate: Sendable, Equatable {
    /// Layers (one module each).
    public let layers: Int
    /// Floats per input (the model's hidden size).
    public let inputSize: Int
    /// Scores per token (the model's KV heads).
    public let outputs: Int
    /// The MLP's hidden width (nil: linear).
    public let hiddenSize: Int?
    /// Per layer: the first matrix (`outputs x inputSize`, or `hiddenSize x inputSize`), row-major.
    let first: [[Float]]
    /// Per layer: the first bias.
    let firstBias: [[Float]]
    /// Per layer: the MLP's second matrix (`outputs x hiddenSize`; empty when linear).
    let second: [[Float]]
    /// Per layer: the MLP's second bias (empty when linear).
    let secondBias: [[Float]]

    /// Reads a surrogate from its directory (`config.json` + `model.safetensors`).
    /// - Throws: `KVError.io` for missing files; `.malformedFile` for a configuration or tensors
    ///   that are not KVzap's.
    public init(directory: String) throws(KVError) {
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw .io(path: configPath, reason: "cannot read KVzap's config.json (pass the directory of a KVzap model, "
                + "e.g. a download of nvidia/KVzap-mlp-<model>)")
        }
        guard let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let input = config["input_dim"] as? Int, let outputs = config["output_dim"] as? Int,
              let layers = config["n_modules"] as? Int, input > 0, outputs > 0, layers > 0 else {
            throw .malformedFile(path: configPath, field: "input_dim/output_dim/n_modules", offset: 0,
                                 reason: "KVzap's configuration needs positive integers input_dim, output_dim and n_modules")
        }
        let hidden = config["hidden_dim"] as? Int
        if let hidden, hidden <= 0 {
            throw .malformedFile(path: configPath, field: "hidden_dim", offset: 0, reason: "\(hidden); positive or null expected")
        }
        let file = try SafeTensorsFile(path: (directory as NSString).appendingPathComponent("model.safetensors"))
        var first: [[Float]] = [], firstBias: [[Float]] = [], second: [[Float]] = [], secondBias: [[Float]] = []
        for l in 0..<layers {
            if let hidden {
                first.append(try file.tensor("layers.\(l).0.weight", shape: [hidden, input]))
                firstBias.append(try file.tensor("layers.\(l).0.bias", shape: [hidden]))
                second.append(try file.tensor("layers.\(l).2.weight", shape: [outputs, hidden]))
                secondBias.append(try file.tensor("layers.\(l).2.bias", shape: [outputs]))
            } else {
                first.append(try file.tensor("layers.\(l).weight", shape: [outputs, input]))
                firstBias.append(try file.tensor("layers.\(l).bias", shape: [outputs]))
            }
        }
        self.layers = layers
        inputSize = input
        self.outputs = outputs
        hiddenSize = hidden
        self.first = first
        self.firstBias = firstBias
        self.second = second
        self.secondBias = secondBias
    }

    /// Layer `layer`'s scores of one input (`inputSize` floats): `outputs` values, one per KV head.
    public func scores(layer: Int, input: UnsafePointer<Float>) -> [Float] {
        precondition(layer >= 0 && layer < layers, "layer \(layer) out of 0..<\(layers)")
        let y = Self.affine(first[layer], firstBias[layer], input, inputSize)
        guard hiddenSize != nil else { return y }
        // Exact GELU, as torch.nn.GELU() computes it.
        let h = y.map { x in 0.5 * x * (1 + erf(x * Float(0.5.squareRoot()))) }
        return h.withUnsafeBufferPointer { Self.affine(second[layer], secondBias[layer], $0.baseAddress!, h.count) }
    }

    /// `W x + b` for a row-major `W` with `n` columns (the f32 matrix-vector kernel).
    private static func affine(_ w: [Float], _ b: [Float], _ x: UnsafePointer<Float>, _ n: Int) -> [Float] {
        var y = [Float](repeating: 0, count: b.count)
        kvk_matvec(KVK_F32, w, b.count, n, x, &y)
        for r in y.indices { y[r] += b[r] }
        return y
    }
}
