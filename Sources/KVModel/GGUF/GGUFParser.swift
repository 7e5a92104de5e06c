import KVCore

/// Bounds-checked parsing of a GGUF header (metadata and tensor infos) from raw bytes.
struct GGUFParser {
    struct Result {
        var version: UInt32
        var metadata: [(key: String, value: GGUFValue)]
        /// Byte offset of each metadata value (after its type tag), parallel to `metadata`.
        var metadataValueOffsets: [Int]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataOffset: Int
    }

    /// Nested arrays deeper than this are rejected (a crafted file could otherwise recurse deeply).
    static let maxArrayDepth = 8
    static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian
    /// Upper bound on up-front reservations: counts are checked against the bytes left, but an
    /// element in memory is larger than its smallest encoding, so grow past this only as parsed.
    static let maxReserve = 1 << 16

    private let bytes: UnsafeRawBufferPointer
    private let path: String
    private var offset = 0

    private init(_ bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws(KVError) -> Result {
        var p = GGUFParser(bytes, path: path)
        return try p.parseAll()
    }

    private func fail(_ field: String, at offset: Int, _ reason: String) -> KVError {
        .malformedFile(path: path, field: field, offset: offset, reason: reason)
    }

    private var remaining: Int { bytes.count - offset }

    private mutating func read<T: FixedWidthInteger>(_: T.Type, _ field: String) throws(KVError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else {
            throw fail(field, at: offset, "file truncated: needs \(size) bytes, \(remaining) left")
        }
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += size
        return v
    }

    /// A count that must be backed by at least `minBytesEach` bytes per element in the rest of the file.
    private mutating func count(_ field: String, minBytesEach: Int) throws(KVError) -> Int {
        let at = offset
        let n = try read(UInt64.self, field)
        guard n <= UInt64(remaining / max(minBytesEach, 1)) else {
            throw fail(field, at: at, "count \(n) cannot fit in the \(remaining) bytes left in the file")
        }
        return Int(n)
    }

    private mutating func string(_ field: String) throws(KVError) -> String {
        let length = try count(field + " (string length)", minBytesEach: 1)
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)]), as: UTF8.self)
        offset += length
        return s
    }

    private static func minimumSize(ofType type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 10, 11, 12: return 8
        case 8: return 8       // length prefix
        case 9: return 12      // element type + count
        default: return nil
        }
    }

    private mutating func value(type: UInt32, field: String, depth: Int) throws(KVError) -> GGUFValue {
        let at = offset
        switch type {
        case 0: return .uint8(try read(UInt8.self, field))
        case 1: return .int8(try read(Int8.self, field))
        case 2: return .uint16(try read(UInt16.self, field))
        case 3: return .int16(try read(Int16.self, field))
        case 4: return .uint32(try read(UInt32.self, field))
        case 5: return .int32(try read(Int32.self, field))
        case 6: return .float32(Float(bitPattern: try read(UInt32.self, field)))
        case 7:
            let b = try read(UInt8.self, field)
            guard b <= 1 else { throw fail(field, at: at, "bool value \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case 8: return .string(try string(field))
        case 9:
            guard depth < Self.maxArrayDepth else {
                throw fail(field, at: at, "arrays nested deeper than \(Self.maxArrayDepth) levels")
            }
            let elementType = try read(UInt32.self, field + " (array element type)")
            guard let minSize = Self.minimumSize(ofType: elementType) else {
                throw fail(field, at: at, "unknown array element type \(elementType)")
            }
            let n = try count(field + " (array length)", minBytesEach: minSize)
            var elements: [GGUFValue] = []
            elements.reserveCapacity(min(n, Self.maxReserve))
            for i in 0..<n {
                elements.append(try value(type: elementType, field: "\(field)[\(i)]", depth: depth + 1))
            }
            return .array(elements)
        case 10: return .uint64(try read(UInt64.self, field))
        case 11: return .int64(try read(Int64.self, field))
        case 12: return .float64(Double(bitPattern: try read(UInt64.self, field)))
        default:
            throw fail(field, at: at, "unknown metadata value type \(type)")
        }
    }

    private mutating func parseAll() throws(KVError) -> Result {
        let magic = try read(UInt32.self, "magic")
        guard magic == Self.magic else {
            throw fail("magic", at: 0, "not a GGUF file (magic 0x\(String(magic, radix: 16)), expected 'GGUF')")
        }
        let version = try read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            throw fail("version", at: 4, "GGUF version \(version) is not supported (2 or 3 are)")
        }
        // Each tensor info needs at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
        // each key/value at least 8 (key length) + 4 (type) + 1.
        let tensorCountAt = offset
        let tensorCount = try read(UInt64.self, "tensor_count")
        let kvCountAt = offset
        let kvCount = try read(UInt64.self, "metadata_kv_count")
        guard kvCount <= UInt64(remaining / 13) else {
            throw fail("metadata_kv_count", at: kvCountAt, "count \(kvCount) cannot fit in the \(remaining) bytes left")
        }
        guard tensorCount <= UInt64(remaining / 24) else {
            throw fail("tensor_count", at: tensorCountAt, "count \(tensorCount) cannot fit in the \(remaining) bytes left")
        }

        var metadata: [(key: String, value: GGUFValue)] = []
        metadata.reserveCapacity(min(Int(kvCount), Self.maxReserve))
        var valueOffsets: [Int] = []
        valueOffsets.reserveCapacity(min(Int(kvCount), Self.maxReserve))
        var keys = Set<String>()
        var alignmentAt = 0
        for i in 0..<Int(kvCount) {
            let keyAt = offset
            let key = try string("metadata[\(i)].key")
            guard keys.insert(key).inserted else {
                throw fail("metadata '\(key)'", at: keyAt, "duplicate metadata key")
            }
            let type = try read(UInt32.self, "metadata '\(key)' type")
            if key == "general.alignment" { alignmentAt = offset }
            valueOffsets.append(offset)
            metadata.append((key, try value(type: type, field: "metadata '\(key)'", depth: 0)))
        }

        var alignment = 32
        if let a = metadata.first(where: { $0.key == "general.alignment" })?.value {
            guard let v = a.intValue, v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
                throw fail("general.alignment", at: alignmentAt, "alignment \(a) is not a power of two in 1...2^20")
            }
            alignment = v
        }

        struct RawInfo { var name: String; var dims: [Int]; var type: ElementType; var offset: UInt64; var at: Int }
        var raws: [RawInfo] = []
        raws.reserveCapacity(min(Int(tensorCount), Self.maxReserve))
        for i in 0..<Int(tensorCount) {
            let at = offset
            let name = try string("tensor[\(i)].name")
            let field = "tensor '\(name)'"
            let nDims = try read(UInt32.self, field + " n_dims")
            guard nDims >= 1 && nDims <= 4 else {
                throw fail(field + " n_dims", at: offset - 4, "\(nDims) dimensions (1 to 4 allowed)")
            }
            var dims: [Int] = []
            for d in 0..<Int(nDims) {
                let dimAt = offset
                let v = try read(UInt64.self, field + " dims[\(d)]")
                guard v >= 1 && v <= UInt64(Int32.max) else {
                    throw fail(field + " dims[\(d)]", at: dimAt, "dimension \(v) out of range 1...\(Int32.max)")
                }
                dims.append(Int(v))
            }
            let typeAt = offset
            let rawType = try read(UInt32.self, field + " type")
            guard let type = ElementType(rawValue: rawType), type != .q2_1 else {
                throw .unsupportedTensorType(tensor: name, type: rawType)
            }
            _ = typeAt
            let off = try read(UInt64.self, field + " offset")
            raws.append(RawInfo(name: name, dims: dims, type: type, offset: off, at: at))
        }
        let dataOffset = (offset + alignment - 1) / alignment * alignment
        let dataBytes = bytes.count - dataOffset
        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(raws.count)
        var names = Set<String>()
        for r in raws {
            let field = "tensor '\(r.name)'"
            guard names.insert(r.name).inserted else { throw fail(field, at: r.at, "duplicate tensor name") }
            var elements = 1
            for d in r.dims {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow, p <= Int(Int32.max) * 64 else {
                    throw fail(field + " dims", at: r.at, "element count overflows")
                }
                elements = p
            }
            guard r.dims[0] % r.type.blockSize == 0 else {
                throw fail(field + " dims[0]", at: r.at,
                           "\(r.dims[0]) is not a multiple of the \(r.type) block size \(r.type.blockSize)")
            }
            let size = elements / r.type.blockSize * r.type.bytesPerBlock
            guard r.offset % UInt64(alignment) == 0 else {
                throw fail(field + " offset", at: r.at, "offset \(r.offset) is not aligned to \(alignment)")
            }
            guard dataBytes >= 0, r.offset <= UInt64(dataBytes), UInt64(size) <= UInt64(dataBytes) - r.offset else {
                throw fail(field + " offset", at: r.at,
                           "data [\(r.offset), +\(size)) lies past the end of the file (data section holds \(max(dataBytes, 0)) bytes)")
            }
            tensors.append(GGUFTensorInfo(name: r.name, dimensions: r.dims, type: r.type,
                                          fileOffset: dataOffset + Int(r.offset), byteCount: size))
        }
        return Result(version: version, metadata: metadata, metadataValueOffsets: valueOffsets, tensors: tensors,
                      alignment: alignment, dataOffset: dataOffset)
    }
}
