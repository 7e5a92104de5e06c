import CKVKernels
import Foundation

/// RestoreKV's trained artifact: learned restore embeddings and a LoRA adapter that is active only
/// while those embeddings run through the model, once, on top of the prompt's cache (``RestoreKV``).
///
/// Read from the published format (`higokri/RestoreKV-<model>[_plus]` on Hugging Face, published for
/// Llama-3.1-8B-Instruct and Qwen3-8B only; none exists for the default model): a directory with
/// `restore_embeddings.safetensors` (`restore_embeddings`, tokens x hidden) and a PEFT LoRA adapter,
/// `adapter_config.json` (`peft_type` `LORA`, `r`, `lora_alpha`, `target_modules`, optional
/// `use_rslora`) and `adapter_model.safetensors`
/// (`base_model.model.model.layers.{l}.{self_attn|mlp}.{module}.lora_A.weight`, rank x in, and
/// `lora_B.weight`, out x rank; F32, F16 or BF16). A LoRA module adds `scaling · B A x` to its
/// projection, `scaling = lora_alpha / r` (`/ √r` with rsLoRA).
///
/// Paper: RestoreKV (arXiv 2608.01247). Reference: NVIDIA/kvpress `restorekv_press.py`.
public struct RestoreKVArtifact: Sendable, Equatable {
    /// The projections a LoRA module may adapt, by their PEFT names.
    public enum Module: String, Sendable, CaseIterable {
        case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
        case gate = "gate_proj", up = "up_proj", down = "down_proj"

        /// The module's block in a Llama layer (`self_attn` or `mlp`).
        var block: String { self == .gate || self == .up || self == .down ? "mlp" : "self_attn" }
    }

    /// One adapted projection: `W + scaling · B A`.
    public struct LowRank: Sendable, Equatable {
        /// `A`: rank x inputs, row-major.
        public let a: [Float]
        /// `B`: outputs x rank, row-major.
        public let b: [Float]
        /// Inputs and outputs of the projection.
        public let inputs: Int, outputs: Int

        /// Adds `scaling · B A x` to `y` for each of `tokens` rows `x` of `input` (`inputs` floats
        /// each; `y` rows of `outputs` floats), in f32.
        public func add(to y: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, tokens: Int, scaling: Float) {
            let rank = a.count / inputs
            var low = [Float](repeating: 0, count: tokens * rank), delta = [Float](repeating: 0, count: tokens * outputs)
            kvk_matmul(KVK_F32, a, rank, inputs, input, tokens, &low, rank)
            kvk_matmul(KVK_F32, b, outputs, rank, low, tokens, &delta, outputs)
            kvk_axpy_f32(scaling, delta, y, tokens * outputs)
        }
    }

    /// Restore tokens.
    public let tokenCount: Int
    /// Floats per restore embedding (the model's hidden size).
    public let width: Int
    /// `tokenCount x width` restore embeddings, row-major.
    public let embeddings: [Float]
    /// The adapter's rank.
    public let rank: Int
    /// The factor on every `B A` product.
    public let scaling: Float
    /// `adapters[layer][module]`: the layer's adapted projections (layers without any: empty; as
    /// many layers as the adapter's last adapted layer + 1).
    public let adapters: [[Module: LowRank]]

    /// Reads an artifact from its directory. The host checks that it fits its model when it runs.
    /// - Throws: `KVError.io` for missing files; `.malformedFile` for a configuration or tensors that
    ///   are not RestoreKV's.
    public init(directory: String) throws(KVError) {
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let configPath = path("adapter_config.json")
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw .io(path: configPath, reason: "cannot read RestoreKV's adapter_config.json (pass the directory of a RestoreKV "
                + "artifact, e.g. a download of higokri/RestoreKV-<model>)")
        }
        guard let config = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              (config["peft_type"] as? String)?.uppercased() == "LORA",
              let rank = config["r"] as? Int, rank > 0, let alpha = (config["lora_alpha"] as? NSNumber)?.floatValue,
              let targets = config["target_modules"] as? [String], !targets.isEmpty else {
            throw .malformedFile(path: configPath, field: "peft_type/r/lora_alpha/target_modules", offset: 0,
                                 reason: "a PEFT LoRA configuration needs peft_type LORA, a positive r, lora_alpha and a list target_modules")
        }
        if config["fan_in_fan_out"] as? Bool == true {
            throw .malformedFile(path: configPath, field: "fan_in_fan_out", offset: 0, reason: "true; Llama's linear layers store out x in (false)")
        }
        var modules: [Module] = []
        for name in targets {
            guard let module = Module(rawValue: name) else {
                throw .malformedFile(path: configPath, field: "target_modules", offset: 0,
                                     reason: "'\(name)'; expected some of \(Module.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            modules.append(module)
        }
        let embeddingFile = try SafeTensorsFile(path: path("restore_embeddings.safetensors"))
        guard let shape = embeddingFile.shape(of: "restore_embeddings"), shape.count == 2, shape[0] >= 1, shape[1] >= 1 else {
            throw .malformedFile(path: embeddingFile.path, field: "restore_embeddings", offset: 0,
                                 reason: "shape \(embeddingFile.shape(of: "restore_embeddings").map { "\($0)" } ?? "missing"), expected [tokens, hidden]")
        }
        embeddings = try embeddingFile.tensor("restore_embeddings", shape: shape)
        tokenCount = shape[0]
        width = shape[1]
        self.rank = rank
        scaling = config["use_rslora"] as? Bool == true ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
        let file = try SafeTensorsFile(path: path("adapter_model.safetensors"))
        // Layers in order until none of the modules has tensors (PEFT may also leave layers out).
        let layerCount = (file.names.compactMap { name -> Int? in
            guard name.hasPrefix("base_model.model.model.layers.") else { return nil }
            return Int(name.dropFirst("base_model.model.model.layers.".count).prefix { $0.isNumber })
        }.max() ?? -1) + 1
        var adapters: [[Module: LowRank]] = []
        for l in 0..<layerCount {
            var layer: [Module: LowRank] = [:]
            for m in modules {
                let name = "base_model.model.model.layers.\(l).\(m.block).\(m.rawValue)"
                guard let aShape = file.shape(of: name + ".lora_A.weight") else { continue }
                guard aShape.count == 2, aShape[0] == rank, let bShape = file.shape(of: name + ".lora_B.weight"),
                      bShape.count == 2, bShape[1] == rank else {
                    throw .malformedFile(path: file.path, field: name, offset: 0,
                                         reason: "lora_A \(aShape) and lora_B \(file.shape(of: name + ".lora_B.weight") ?? []): expected [\(rank), in] and [out, \(rank)]")
                }
                layer[m] = LowRank(a: try file.tensor(name + ".lora_A.weight", shape: aShape),
                                   b: try file.tensor(name + ".lora_B.weight", shape: bShape),
                                   inputs: aShape[1], outputs: bShape[0])
            }
            adapters.append(layer)
        }
        guard adapters.contains(where: { !$0.isEmpty }) else {
            throw .malformedFile(path: file.path, field: "lora_A", offset: 0,
                                 reason: "no LoRA tensor of the configured modules (tensors: \(file.names.prefix(4).joined(separator: ", "))...)")
        }
        self.adapters = adapters
    }
}
