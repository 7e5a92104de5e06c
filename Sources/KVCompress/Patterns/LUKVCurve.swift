import Foundation

/// LU-KV's budget curve: for each target compression ratio 0.01 ... 0.99 (99 rows), the fraction of
/// each (layer, KV head) to prune, found offline by the LU-KV optimization for one model and scorer.
///
/// Read from the published format, a NumPy `.npy` file of shape `[99, layers, kvHeads]` (float32 or
/// float64, C order), as kvpress's `LUKVPress` downloads it (it ships only Llama-3.1-8B's curve for
/// `ExpectedAttentionPress(epsilon=2e-2)`; none exists for the default model). LU-KV's repository
/// makes new ones (`evaluation/curve_data/generate_curve.sh`).
///
/// Paper: "Predicting Future Utility: Global Combinatorial Optimization for Task-Agnostic KV Cache
/// Eviction" (LU-KV, arXiv 2602.08585). Reference: NVIDIA/kvpress `lukv_press.py`; baidu-baige/LU-KV.
public struct LUKVCurve: Sendable, Equatable {
    /// Layers.
    public let layers: Int
    /// KV heads per layer.
    public let kvHeads: Int
    /// `values[(target * layers + layer) * kvHeads + head]`, target 0 ..< 99 for ratios 0.01 ... 0.99.
    public let values: [Double]

    /// Creates a curve from its values.
    /// - Throws: `KVError.shapeMismatch` unless there are `99 x layers x kvHeads` finite values.
    public init(layers: Int, kvHeads: Int, values: [Double]) throws(KVError) {
        guard layers > 0, kvHeads > 0, values.count == 99 * layers * kvHeads, values.allSatisfy(\.isFinite) else {
            throw .shapeMismatch("an LU-KV curve holds 99 x layers x kvHeads finite prune ratios; got \(values.count) values "
                + "for \(layers) x \(kvHeads)")
        }
        self.layers = layers
        self.kvHeads = kvHeads
        self.values = values
    }

    /// Reads a `.npy` curve.
    /// - Throws: `KVError.io` when the file cannot be read; `.malformedFile` when it is not a C-order
    ///   little-endian float32/float64 array of shape `[99, layers, kvHeads]`.
    public init(npyPath path: String) throws(KVError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: "cannot read the LU-KV curve (a .npy file of shape [99, layers, kv_heads])")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes.prefix(6) == [0x93] + Array("NUMPY".utf8) else {
            throw .malformedFile(path: path, field: "magic", offset: 0, reason: "not a NumPy .npy file")
        }
        let major = bytes[6]
        let lengthBytes = major == 1 ? 2 : 4
        guard major >= 1 && major <= 3, bytes.count >= 8 + lengthBytes else {
            throw .malformedFile(path: path, field: "version", offset: 6, reason: "version \(major) (1 to 3 read)")
        }
        let headerLength = bytes[8..<(8 + lengthBytes)].reversed().reduce(0) { $0 << 8 | Int($1) }
        let dataStart = 8 + lengthBytes + headerLength
        guard dataStart <= bytes.count else {
            throw .malformedFile(path: path, field: "header", offset: 8, reason: "the header runs past the end (truncated?)")
        }
        let header = String(decoding: bytes[(8 + lengthBytes)..<dataStart], as: UTF8.self)
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        let width: Int
        switch field("descr").map({ String($0.prefix(5)) }) {
        case "'<f4'": width = 4
        case "'<f8'": width = 8
        default: throw .malformedFile(path: path, field: "descr", offset: 8, reason: "little-endian float32 or float64 expected")
        }
        guard field("fortran_order")?.hasPrefix("False") == true else {
            throw .malformedFile(path: path, field: "fortran_order", offset: 8, reason: "C order expected")
        }
        guard let shapeText = field("shape"), let open = shapeText.firstIndex(of: "("), let close = shapeText.firstIndex(of: ")") else {
            throw .malformedFile(path: path, field: "shape", offset: 8, reason: "no shape tuple")
        }
        let shape = shapeText[shapeText.index(after: open)..<close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard shape.count == 3, shape[0] == 99, shape[1] > 0, shape[2] > 0 else {
            throw .malformedFile(path: path, field: "shape", offset: 8, reason: "\(shape); [99, layers, kv_heads] expected")
        }
        guard let count = shape.checkedProduct, count <= (bytes.count - dataStart) / width, bytes.count - dataStart == count * width else {
            throw .malformedFile(path: path, field: "data", offset: dataStart,
                                 reason: "\(bytes.count - dataStart) bytes for \(shape) values of \(width) bytes (truncated?)")
        }
        let values: [Double] = bytes.withUnsafeBytes { raw in
            (0..<count).map { i in
                width == 4 ? Double(raw.loadUnaligned(fromByteOffset: dataStart + 4 * i, as: Float.self))
                    : raw.loadUnaligned(fromByteOffset: dataStart + 8 * i, as: Double.self)
            }
        }
        try self.init(layers: shape[1], kvHeads: shape[2], values: values)
    }

    /// The prune ratio of (`layer`, `head`) for target compression ratio `ratio` (the row
    /// `round(100 ratio) - 1`, clamped to the curve's 99 rows, as kvpress indexes it).
    public func pruneRatio(ratio: Double, layer: Int, head: Int) -> Double {
        let target = min(98, max(0, Int((ratio * 100).rounded(.toNearestOrEven)) - 1))
        return values[(target * layers + layer) * kvHeads + head]
    }
}
