#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import CKVKernels

/// Fast KVzip's trained gates: for each layer, a small attention-like network that predicts KVzip's
/// importance of every token for each KV head from the token's attention input (its normed hidden
/// state), without KVzip's replay.
///
/// Per layer: `q = RMSNorm(W_q x + b_q)` as `kvHeads x group` vectors of `width` (16) and
/// `k = RMSNorm(W_k x)` as `kvHeads` vectors (each with its own learned norm weight, eps 1e-6);
/// `logit[m][j] = k_m . q_mj / sqrt(width) + bias[m][j]`, `base[m][s][j] = sink_ms . q_mj / sqrt(width)`
/// over `sinks` learned keys; the score of head `m` is the mean over `j` of
/// `1 / (1 + sum_s exp(base[m][s][j] - logit[m][j]))`.
///
/// Read from the published format (`Jang-Hyun/Fast-KVzip` on Hugging Face, `<model>/q<g>_dim16_sink16.pt`):
/// a `torch.save` file whose `module` list holds one state dict per layer (`q_proj.weight`,
/// `q_proj.bias`, `k_proj.weight`, `q_norm.weight`, `k_norm.weight`, `k_base`, `b`). Gates are
/// published only for some larger models; none exists for the default model.
///
/// Paper: Kim, Han, Yun, "Fast KVzip" (arXiv 2601.17668). Reference: NVIDIA/kvpress
/// `fastkvzip_press.py` (`FastKVzipGate`); Janghyun1230/FastKVzip.
public struct FastKVzipGates: Sendable, Equatable {
    /// One layer's gate.
    struct Gate: Sendable, Equatable {
        var queryWeight: [Float], queryBias: [Float], keyWeight: [Float]
        var queryNorm: [Float], keyNorm: [Float], sinkKeys: [Float], bias: [Float]
    }
    let gates: [Gate]
    /// Floats per input (the model's hidden size).
    public let inputSize: Int
    /// KV heads.
    public let kvHeads: Int
    /// Query vectors per KV head (the model's group size).
    public let group: Int
    /// Width of the gate's vectors (16 in the published gates).
    public let width: Int
    /// Learned sink keys per head (16 in the published gates).
    public let sinks: Int

    /// Layers.
    public var layers: Int { gates.count }

    /// Reads the gates from a `torch.save` file.
    /// - Throws: `KVError.io` / `.malformedFile` for a file that is not Fast KVzip's gates.
    public init(path: String) throws(KVError) {
        let checkpoint = try TorchCheckpoint(path: path)
        guard case .list(let layers) = checkpoint.root["module"] ?? checkpoint.root else {
            throw .malformedFile(path: path, field: "module", offset: 0, reason: "no list of per-layer state dicts")
        }
        try self.init(stateDicts: layers, path: path)
    }

    /// The gates from one state dict per layer (values of a ``TorchCheckpoint``; `path` names them in errors).
    /// - Throws: `KVError.malformedFile` for tensors that are missing or do not fit one gate.
    public init(stateDicts layers: [TorchCheckpoint.Value], path: String = "(state dicts)") throws(KVError) {
        guard !layers.isEmpty else {
            throw .malformedFile(path: path, field: "module", offset: 0, reason: "no layers")
        }
        func tensor(_ layer: TorchCheckpoint.Value, _ name: String, _ index: Int) throws(KVError) -> (shape: [Int], values: [Float]) {
            guard case .tensor(let shape, let values)? = layer[name] else {
                throw .malformedFile(path: path, field: "module[\(index)].\(name)", offset: 0, reason: "missing tensor")
            }
            return (shape, values)
        }
        var gates: [Gate] = []
        var dims: [Int] = []
        for (i, layer) in layers.enumerated() {
            let q = try tensor(layer, "q_proj.weight", i), k = try tensor(layer, "k_proj.weight", i)
            let qb = try tensor(layer, "q_proj.bias", i), qn = try tensor(layer, "q_norm.weight", i)
            let kn = try tensor(layer, "k_norm.weight", i), base = try tensor(layer, "k_base", i), b = try tensor(layer, "b", i)
            guard q.shape.count == 2, k.shape.count == 2, base.shape.count == 4, qn.shape.count == 1 else {
                throw .malformedFile(path: path, field: "module[\(i)]", offset: 0, reason: "unexpected tensor ranks")
            }
            let width = qn.shape[0], heads = base.shape[0], sinks = base.shape[2]
            let group = heads > 0 && width > 0 ? q.shape[0] / (heads * width) : 0
            let layerDims = [q.shape[1], heads, group, width, sinks]
            guard group > 0, q.shape[0] == heads * group * width, k.shape == [heads * width, q.shape[1]], qb.shape == [q.shape[0]],
                  kn.shape == [width], base.shape == [heads, 1, sinks, width], b.shape == [heads, 1, group],
                  dims.isEmpty || dims == layerDims else {
                throw .malformedFile(path: path, field: "module[\(i)]", offset: 0, reason: "tensor shapes do not fit one Fast KVzip gate")
            }
            dims = layerDims
            gates.append(Gate(queryWeight: q.values, queryBias: qb.values, keyWeight: k.values, queryNorm: qn.values,
                              keyNorm: kn.values, sinkKeys: base.values, bias: b.values))
        }
        self.gates = gates
        (inputSize, kvHeads, group, width, sinks) = (dims[0], dims[1], dims[2], dims[3], dims[4])
    }

    /// Layer `layer`'s scores of one input (`inputSize` floats): one value in (0, 1) per KV head.
    public func scores(layer: Int, input x: UnsafePointer<Float>) -> [Float] {
        precondition(layer >= 0 && layer < layers, "layer \(layer) out of 0..<\(layers)")
        let gate = gates[layer], w = width, n = inputSize
        var queries = [Float](repeating: 0, count: kvHeads * group * w), keys = [Float](repeating: 0, count: kvHeads * w)
        kvk_matvec(KVK_F32, gate.queryWeight, queries.count, n, x, &queries)
        kvk_matvec(KVK_F32, gate.keyWeight, keys.count, n, x, &keys)
        for i in queries.indices { queries[i] += gate.queryBias[i] }
        func normalized(_ v: ArraySlice<Float>, _ weight: [Float]) -> [Float] {
            let scale = 1 / (v.reduce(0) { $0 + $1 * $1 } / Float(v.count) + 1e-6).squareRoot()
            return zip(v, weight).map { $0 * scale * $1 }
        }
        let root = Float(w).squareRoot()
        return (0..<kvHeads).map { m in
            let key = normalized(keys[(m * w)..<((m + 1) * w)], gate.keyNorm)
            var total: Float = 0
            for j in 0..<group {
                let row = (m * group + j) * w
                let query = normalized(queries[row..<(row + w)], gate.queryNorm)
                let logit = zip(key, query).reduce(0) { $0 + $1.0 * $1.1 } / root + gate.bias[m * group + j]
                var sum: Float = 0
                for s in 0..<sinks {
                    let base = (0..<w).reduce(Float(0)) { $0 + gate.sinkKeys[(m * sinks + s) * w + $1] * query[$1] } / root
                    sum += exp(base - logit)
                }
                total += 1 / (1 + sum)
            }
            return total / Float(group)
        }
    }
}
