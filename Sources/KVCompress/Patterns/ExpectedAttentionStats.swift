import Foundation

/// Query statistics for Expected Attention collected offline (kvpress `ExpectedAttentionStatsPress`):
/// per layer and query head, the mean and covariance of the model's pre-RoPE queries over a
/// calibration text, so that scoring does not depend on the prompt's own queries.
///
/// Stored as kvpress publishes them (`alessiodevoto/exp_att_stats_*`, `ExpectedAttentionStats`): a
/// directory with `model.safetensors` holding `query_mean` `[layers, heads, headDim]` and
/// `query_cov` `[layers, heads, headDim, headDim]` (F32, F16 or BF16) and a `config.json`. Dimensions
/// are in Hugging Face's order (RoPE pairs `(i, i + headDim/2)`); ``ExpectedAttentionScorer`` maps them
/// to the host's pairing. `kvcompress calibrate expected-attention` makes them; KVModel ships the
/// default model's.
public struct ExpectedAttentionStats: Sendable, Equatable {
    /// Layers.
    public let layers: Int
    /// Query heads per layer.
    public let heads: Int
    /// Dimensions per head.
    public let headDim: Int
    /// `mean[(layer * heads + head) * headDim + i]`, Hugging Face's dimension order.
    public let mean: [Float]
    /// `covariance[((layer * heads + head) * headDim + i) * headDim + j]`, Hugging Face's order.
    public let covariance: [Float]

    /// Creates statistics from their values.
    /// - Throws: `KVError.shapeMismatch` for counts that do not fit the shape or non-finite values.
    public init(layers: Int, heads: Int, headDim: Int, mean: [Float], covariance: [Float]) throws(KVError) {
        guard layers > 0, heads > 0, headDim > 0, headDim % 2 == 0, mean.count == layers * heads * headDim,
              covariance.count == mean.count * headDim, mean.allSatisfy(\.isFinite), covariance.allSatisfy(\.isFinite) else {
            throw .shapeMismatch("query statistics need layers x heads x headDim finite means (headDim even) and as many "
                + "headDim-wide covariance rows; got \(mean.count) and \(covariance.count) values for \(layers) x \(heads) x \(headDim)")
        }
        self.layers = layers
        self.heads = heads
        self.headDim = headDim
        self.mean = mean
        self.covariance = covariance
    }

    /// Creates statistics from moments in the host's dimension order (`pairing`), stored in Hugging
    /// Face's: `hostMean[layer][head]` (`headDim` values) and `hostCovariance[layer][head]` (`headDim x headDim`).
    /// - Throws: `KVError.shapeMismatch` for tables that do not fit.
    public init(hostMean: [[[Double]]], hostCovariance: [[[Double]]], pairing: RoPEPairing) throws(KVError) {
        guard let d = hostMean.first?.first?.count else { throw .shapeMismatch("no query statistics") }
        let layers = hostMean.count, heads = hostMean[0].count
        guard hostCovariance.count == layers, hostMean.allSatisfy({ $0.count == heads && $0.allSatisfy { $0.count == d } }),
              hostCovariance.allSatisfy({ $0.count == heads && $0.allSatisfy { $0.count == d * d } }) else {
            throw .shapeMismatch("query means and covariances must be layers x heads x d and layers x heads x (d x d)")
        }
        let toHost = Self.hostIndex(headDim: d, pairing: pairing)
        var mean: [Float] = [], covariance: [Float] = []
        for l in 0..<layers {
            for h in 0..<heads {
                for i in 0..<d {
                    mean.append(Float(hostMean[l][h][toHost[i]]))
                    for j in 0..<d { covariance.append(Float(hostCovariance[l][h][toHost[i] * d + toHost[j]])) }
                }
            }
        }
        try self.init(layers: layers, heads: heads, headDim: d, mean: mean, covariance: covariance)
    }

    /// Reads a statistics directory (its `model.safetensors`).
    /// - Throws: `KVError.io` / `.malformedFile` for a missing or malformed file.
    public init(directory: String) throws(KVError) {
        let file = try SafeTensorsFile(path: (directory as NSString).appendingPathComponent("model.safetensors"))
        guard let shape = file.shape(of: "query_mean"), shape.count == 3 else {
            throw .malformedFile(path: file.path, field: "query_mean", offset: 0,
                                 reason: "missing or not [layers, heads, head_dim] (kvpress's ExpectedAttentionStats layout)")
        }
        try self.init(layers: shape[0], heads: shape[1], headDim: shape[2], mean: try file.tensor("query_mean", shape: shape),
                      covariance: try file.tensor("query_cov", shape: shape + [shape[2]]))
    }

    /// Writes the statistics as a directory kvpress reads (`ExpectedAttentionStats.from_pretrained`):
    /// `model.safetensors` in `dtype` (`"F32"` or `"F16"`) and `config.json` with `config`.
    /// - Throws: `KVError.io` when it cannot be written.
    public func write(directory: String, dtype: String = "F32", config: [String: Any] = [:]) throws(KVError) {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var all = config
            all["num_layers"] = layers
            all["num_heads"] = heads
            all["head_dim"] = headDim
            let json = try JSONSerialization.data(withJSONObject: all, options: [.sortedKeys, .prettyPrinted])
            try json.write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("config.json")))
        } catch {
            throw .io(path: directory, reason: error.localizedDescription)
        }
        try SafeTensorsFile.write([("query_mean", [layers, heads, headDim], mean),
                                   ("query_cov", [layers, heads, headDim, headDim], covariance)],
                                  dtype: dtype, to: (directory as NSString).appendingPathComponent("model.safetensors"))
    }

    /// The mean and covariance of (`layer`, `head`) in the host's dimension order: Hugging Face's
    /// pair `i` (dimensions `i`, `i + headDim/2`) is the host's `pairing.pair(i)`.
    func moments(layer: Int, head: Int, pairing: RoPEPairing) -> (mean: [Double], covariance: [Double]) {
        let d = headDim
        let toHost = Self.hostIndex(headDim: d, pairing: pairing)
        let base = (layer * heads + head) * d
        var mu = [Double](repeating: 0, count: d), sigma = [Double](repeating: 0, count: d * d)
        for i in 0..<d {
            mu[toHost[i]] = Double(mean[base + i])
            for j in 0..<d { sigma[toHost[i] * d + toHost[j]] = Double(covariance[(base + i) * d + j]) }
        }
        return (mu, sigma)
    }

    /// `toHost[i]`: the host's dimension of Hugging Face's dimension `i`.
    static func hostIndex(headDim d: Int, pairing: RoPEPairing) -> [Int] {
        var toHost = [Int](repeating: 0, count: d)
        for i in 0..<(d / 2) {
            let (a, b) = pairing.pair(i, headDim: d)
            toHost[i] = a
            toHost[i + d / 2] = b
        }
        return toHost
    }
}
