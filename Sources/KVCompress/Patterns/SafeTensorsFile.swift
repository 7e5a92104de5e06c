import CKVKernels
import Foundation

/// A safetensors file, Hugging Face's format for trained weights: an 8-byte little-endian header
/// length, a JSON header giving each tensor's element type, shape and byte range, then the data.
/// The whole file is read at once; `F32`, `F16` and `BF16` tensors are read as f32.
public struct SafeTensorsFile: Sendable {
    /// Where the file was read from (for messages).
    public let path: String
    /// One tensor's header entry.
    struct Entry: Sendable {
        let dtype: String
        let shape: [Int]
        let range: Range<Int>
    }
    let entries: [String: Entry]
    let payload: Data

    /// Reads and checks the header of the file at `path`.
    /// - Throws: `KVError.io` when it cannot be read; `.malformedFile` for a truncated file, a
    ///   header that is not the format's JSON, or a tensor whose bytes lie outside the data or do
    ///   not fit its shape.
    public init(path: String) throws(KVError) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .io(path: path, reason: "cannot read the safetensors file (\(error.localizedDescription))")
        }
        guard data.count >= 8 else {
            throw .malformedFile(path: path, field: "header length", offset: 0, reason: "the file has \(data.count) bytes, fewer than 8")
        }
        let length = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(data.count - 8) else {
            throw .malformedFile(path: path, field: "header length", offset: 0,
                                 reason: "the header claims \(length) bytes; the file holds \(data.count - 8) after the length (truncated?)")
        }
        let headerEnd = 8 + Int(length)
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)) as? [String: Any] else {
            throw .malformedFile(path: path, field: "header", offset: 8, reason: "not a JSON object")
        }
        let payload = data.subdata(in: headerEnd..<data.count)
        var entries: [String: Entry] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2,
                  shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= payload.count else {
                throw .malformedFile(path: path, field: name, offset: 8,
                                     reason: "needs dtype, shape and data_offsets inside the \(payload.count) data bytes")
            }
            if let size = Self.elementSize(dtype),
               shape.checkedProduct.map({ $0.multipliedReportingOverflow(by: size) }).map({ $0.overflow || $0.partialValue != offsets[1] - offsets[0] }) ?? true {
                throw .malformedFile(path: path, field: name, offset: headerEnd + offsets[0],
                                     reason: "\(offsets[1] - offsets[0]) bytes do not hold a \(dtype) tensor of shape \(shape)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        self.path = path
        self.entries = entries
        self.payload = payload
    }

    /// The tensors' names.
    public var names: [String] { entries.keys.sorted() }

    /// The shape of tensor `name`, or nil when the file has none of that name.
    public func shape(of name: String) -> [Int]? { entries[name]?.shape }

    /// Tensor `name` as f32, row-major, after checking that its shape is `shape`.
    /// - Throws: `KVError.malformedFile` when the tensor is missing, has another shape or an element
    ///   type other than F32, F16 and BF16.
    public func tensor(_ name: String, shape: [Int]) throws(KVError) -> [Float] {
        guard let e = entries[name] else {
            throw .malformedFile(path: path, field: name, offset: 0, reason: "no tensor of that name (the file has \(names.prefix(6).joined(separator: ", "))...)")
        }
        guard e.shape == shape else {
            throw .malformedFile(path: path, field: name, offset: 0, reason: "shape \(e.shape), expected \(shape)")
        }
        guard Self.elementSize(e.dtype) != nil else {
            throw .malformedFile(path: path, field: name, offset: 0, reason: "element type \(e.dtype); F32, F16 or BF16 expected")
        }
        let count = shape.reduce(1, *)
        let bytes = payload.subdata(in: e.range)
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { o in
                switch e.dtype {
                case "F32": for i in 0..<count { o[i] = raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
                case _ where count > 0:
                    let halves = (0..<count).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) }
                    if e.dtype == "BF16" { kvk_bf16_to_f32(halves, o.baseAddress!, count) } else { kvk_f16_to_f32(halves, o.baseAddress!, count) }
                default: break
                }
            }
        }
        return out
    }

    /// Writes `tensors` (name, shape, row-major values) as a safetensors file, in `dtype` (`"F32"`
    /// or `"F16"`), with `metadata` in the header's `__metadata__`.
    /// - Throws: `KVError.invalidParameter` for another type or values that do not fit a shape;
    ///   `.io` when the file cannot be written.
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], dtype: String = "F32",
                             metadata: [String: String] = [:], to path: String) throws(KVError) {
        guard dtype == "F32" || dtype == "F16" else {
            throw .invalidParameter(name: "dtype", value: dtype, expected: "F32 or F16")
        }
        var header: [String: Any] = metadata.isEmpty ? [:] : ["__metadata__": metadata]
        var payload = Data()
        for t in tensors {
            guard t.values.count == t.shape.reduce(1, *) else {
                throw .invalidParameter(name: t.name, value: "\(t.values.count) values", expected: "shape \(t.shape)")
            }
            let start = payload.count
            if dtype == "F32" {
                t.values.withUnsafeBytes { payload.append(contentsOf: $0) }
            } else {
                var halves = [UInt16](repeating: 0, count: t.values.count)
                if !halves.isEmpty { kvk_f32_to_f16(t.values, &halves, t.values.count) }
                halves.withUnsafeBytes { payload.append(contentsOf: $0) }
            }
            header[t.name] = ["dtype": dtype, "shape": t.shape, "data_offsets": [start, payload.count]] as [String: Any]
        }
        guard var json = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) else {
            throw .invalidParameter(name: "metadata", value: "\(metadata)", expected: "JSON-encodable strings")
        }
        while json.count % 8 != 0 { json.append(0x20) }  // the data starts 8-byte aligned
        var file = Data((0..<8).map { UInt8(truncatingIfNeeded: json.count >> (8 * $0)) })
        file.append(json)
        file.append(payload)
        do { try file.write(to: URL(fileURLWithPath: path)) } catch {
            throw .io(path: path, reason: error.localizedDescription)
        }
    }

    /// Bytes per element of the types read here (nil for others, which `tensor` refuses).
    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F32": return 4
        case "F16", "BF16": return 2
        default: return nil
        }
    }
}
