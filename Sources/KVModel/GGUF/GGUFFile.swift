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
    /// Whether `base` was allocated by ``init(copying:path:)`` (freed) rather than mapped (unmapped).
    private let ownsAllocation: Bool
    private let index: [String: Int]
    private let metadataIndex: [String: Int]
    private let metadataValueOffsets: [Int]

    /// Maps and parses the file at `path`.
    /// - Throws: `KVError.io` when it cannot be opened or mapped, `.malformedFile` when it is not a
    ///   valid GGUF v2/v3 file, `.unsupportedTensorType` for tensor types this library cannot read.
    public convenience init(path: String) throws(KVError) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        var mapped: UnsafeRawPointer? = nil
        if size > 0 {
            guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
                throw .io(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
            }
            mapped = UnsafeRawPointer(p)
        }
        try self.init(path: path, base: mapped, size: size, ownsAllocation: false)
    }

    /// Parses a copy of `bytes` as a GGUF file named `path` in messages (no file is read): the same
    /// parser and checks as ``init(path:)``, for fuzzing and in-memory tests.
    convenience init(copying bytes: UnsafeRawBufferPointer, path: String) throws(KVError) {
        var copy: UnsafeRawPointer? = nil
        if bytes.count > 0 {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 64)
            buffer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            copy = UnsafeRawPointer(buffer)
        }
        try self.init(path: path, base: copy, size: bytes.count, ownsAllocation: true)
    }

    /// Parses the `size` bytes at `base`, taking ownership of them (released on failure too).
    private init(path: String, base: UnsafeRawPointer?, size: Int, ownsAllocation: Bool) throws(KVError) {
        self.path = path
        self.base = base
        self.fileSize = size
        self.ownsAllocation = ownsAllocation
        let parsed: GGUFParser.Result
        do {
            parsed = try GGUFParser.parse(UnsafeRawBufferPointer(start: base, count: size), path: path)
        } catch {
            Self.release(base, size: size, ownsAllocation: ownsAllocation)
            throw error
        }
        version = parsed.version
        metadata = parsed.metadata
        metadataValueOffsets = parsed.metadataValueOffsets
        tensors = parsed.tensors
        alignment = parsed.alignment
        dataOffset = parsed.dataOffset
        var idx: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { idx[t.name] = i }
        index = idx
        var midx: [String: Int] = [:]
        for (i, kv) in metadata.enumerated() { midx[kv.key] = i }
        metadataIndex = midx
    }

    private static func release(_ base: UnsafeRawPointer?, size: Int, ownsAllocation: Bool) {
        guard let base else { return }
        if ownsAllocation {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        } else {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
        }
    }

    deinit {
        Self.release(base, size: fileSize, ownsAllocation: ownsAllocation)
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

    /// The byte offset of `key`'s value in the file (after its type tag), or nil when it is absent.
    func valueOffset(_ key: String) -> Int? {
        metadataIndex[key].map { metadataValueOffsets[$0] }
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

    /// Drops this process's resident pages that lie wholly inside tensor `name`'s data, for a caller
    /// that keeps its own copy: the view stays valid (a mapped file's pages are read back from the file
    /// when touched again), so the copy does not count twice in the resident set. Does nothing for a
    /// file parsed from memory.
    func releaseResidentPages(of name: String) throws(KVError) {
        guard !ownsAllocation else { return }
        let bytes = try data(name)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: bytes.baseAddress!) + page - 1) / page * page
        let end = (Int(bitPattern: bytes.baseAddress!) + bytes.count) / page * page
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
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
