#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif
import CKVKernels
import KVCore

/// A memory-mapped GGUF file (versions 2 and 3): metadata, tensor infos and tensor bytes.
///
/// Parsing is defensive: every read is bounds-checked against the file size, every count is checked
/// against the bytes that remain before anything is allocated, dimension products are checked for
/// overflow, metadata keys and tensor names must be unique and every tensor's data must lie inside
/// the file. A malformed or truncated file throws
/// `KVError.malformedFile` naming the field and byte offset; an unknown tensor type throws
/// `KVError.unsupportedTensorType`. The mapping stays alive as long as the object (tensor views
/// borrow it).
///
/// Format: GGUF specification in ggml-org/ggml `docs/gguf.md`.
public final class GGUFFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// GGUF version (2 or 3).
    public let version: UInt32
    /// Metadata key/value pairs, in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    /// Tensor infos, in file order.
    public let tensors: [GGUFTensorInfo]
    /// Data section alignment (`general.alignment`, default 32).
    public let alignment: Int
    /// Byte offset of the tensor data section.
    public let dataOffset: Int
    /// File size in bytes.
    public let fileSize: Int

    private let base: UnsafeRawPointer?
    private let index: [String: Int]
    private let metadataIndex: [String: Int]

    /// Maps and parses the file at `path`.
    /// - Throws: `KVError.io` when it cannot be opened or mapped, `.malformedFile` when it is not a
    ///   valid GGUF v2/v3 file, `.unsupportedTensorType` for tensor types this library cannot read.
    public init(path: String) throws(KVError) {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        fileSize = size
        var mapped: UnsafeRawPointer? = nil
        if size > 0 {
            guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
                throw .io(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
            }
            mapped = UnsafeRawPointer(p)
        }
        base = mapped
        do {
            let parsed = try GGUFParser.parse(UnsafeRawBufferPointer(start: mapped, count: size), path: path)
            version = parsed.version
            metadata = parsed.metadata
            tensors = parsed.tensors
            alignment = parsed.alignment
            dataOffset = parsed.dataOffset
        } catch {
            if let mapped { munmap(UnsafeMutableRawPointer(mutating: mapped), size) }
            throw error
        }
        var idx: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { idx[t.name] = i }
        index = idx
        var midx: [String: Int] = [:]
        for (i, kv) in metadata.enumerated() { midx[kv.key] = i }
        metadataIndex = midx
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), fileSize) }
    }

    // MARK: metadata

    /// The value for `key`, or nil.
    public func value(_ key: String) -> GGUFValue? {
        metadataIndex[key].map { metadata[$0].value }
    }

    /// The string value of `key`.
    /// - Throws: `KVError.unsupportedModel` when it is missing or not a string.
    public func string(_ key: String) throws(KVError) -> String {
        guard let v = value(key)?.stringValue else { throw missing(key, "a string") }
        return v
    }

    /// The integer value of `key`.
    /// - Throws: `KVError.unsupportedModel` when it is missing or not an integer.
    public func int(_ key: String) throws(KVError) -> Int {
        guard let v = value(key)?.intValue else { throw missing(key, "an integer") }
        return v
    }

    /// The numeric value of `key` as `Float`.
    /// - Throws: `KVError.unsupportedModel` when it is missing or not numeric.
    public func float(_ key: String) throws(KVError) -> Float {
        guard let v = value(key)?.doubleValue else { throw missing(key, "a number") }
        return Float(v)
    }

    /// The array value of `key`.
    /// - Throws: `KVError.unsupportedModel` when it is missing or not an array.
    public func array(_ key: String) throws(KVError) -> [GGUFValue] {
        guard let v = value(key)?.arrayValue else { throw missing(key, "an array") }
        return v
    }

    private func missing(_ key: String, _ what: String) -> KVError {
        .unsupportedModel("\(path): metadata key '\(key)' is missing or not \(what)")
    }

    // MARK: tensors

    /// Whether a tensor named `name` exists.
    public func hasTensor(_ name: String) -> Bool { index[name] != nil }

    /// The info of tensor `name`.
    /// - Throws: `KVError.unsupportedModel` when there is none.
    public func info(_ name: String) throws(KVError) -> GGUFTensorInfo {
        guard let i = index[name] else { throw .unsupportedModel("\(path): tensor '\(name)' not found") }
        return tensors[i]
    }

    /// The bytes of tensor `name`, inside the mapping (valid while this object lives).
    public func data(_ name: String) throws(KVError) -> UnsafeRawBufferPointer {
        let t = try info(name)
        return UnsafeRawBufferPointer(start: base! + t.fileOffset, count: t.byteCount)
    }

    /// Tensor `name` converted to f32 (dequantized for block types).
    public func dequantized(_ name: String) throws(KVError) -> [Float] {
        let t = try info(name)
        let bytes = try data(name)
        return [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
            kvk_dequantize(t.type.kernelType, bytes.baseAddress!, buf.baseAddress!, t.elementCount)
            n = t.elementCount
        }
    }
}
