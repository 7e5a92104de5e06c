import Foundation

/// A metadata value as the test writer emits it: every GGUF value type, with arrays carrying their
/// element type explicitly (so empty arrays and corrupt element types can be written), plus raw
/// escapes for writing deliberately malformed payloads.
indirect enum GGUFTestValue {
    case uint8(UInt8)
    case int8(Int8)
    case uint16(UInt16)
    case int16(Int16)
    case uint32(UInt32)
    case int32(Int32)
    case float32(Float)
    case bool(Bool)
    case string(String)
    case uint64(UInt64)
    case int64(Int64)
    case float64(Double)
    /// An array whose elements are all of GGUF type `elementType` (their payloads are written
    /// without type tags, as the format says).
    case array(elementType: UInt32, [GGUFTestValue])
    /// Any type id followed by arbitrary payload bytes (for corrupt values).
    case raw(type: UInt32, payload: [UInt8])

    /// The GGUF type id written before this value.
    var typeID: UInt32 {
        switch self {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        case .raw(let type, _): return type
        }
    }
}

/// One tensor as the test writer emits it.
struct GGUFTestTensor {
    var name: String
    /// GGML dimensions, fastest-varying first.
    var dims: [UInt64]
    /// GGML type id.
    var type: UInt32
    /// The tensor's data bytes (written at the next aligned position of the data section).
    var data: [UInt8]
    /// When set, this offset is written into the tensor info instead of the real one.
    var offsetOverride: UInt64? = nil
    /// When set, this n_dims is written instead of `dims.count`.
    var nDimsOverride: UInt32? = nil
}

/// A small, test-only GGUF writer (little-endian, versions 2/3 layout) that records where every
/// part of the file landed, so tests can truncate or patch the bytes.
struct GGUFTestWriter {
    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var metadata: [(key: String, value: GGUFTestValue)] = []
    var tensors: [GGUFTestTensor] = []
    /// Alignment used to lay out the data section (it is not written by itself: put a
    /// `general.alignment` entry in `metadata` for the reader to see it).
    var alignment = 32
    /// When set, written instead of the real tensor count.
    var tensorCountOverride: UInt64? = nil
    /// When set, written instead of the real metadata count.
    var kvCountOverride: UInt64? = nil

    /// Where the parts of a built file are.
    struct Layout {
        /// Offset of the tensor_count field.
        var tensorCountAt = 0
        /// Offset of the metadata_kv_count field.
        var kvCountAt = 0
        /// Offset of each metadata entry (its key length).
        var metadataAt: [Int] = []
        /// Offset of each tensor info (its name length).
        var tensorInfoAt: [Int] = []
        /// Offset of each tensor info's type field.
        var tensorTypeAt: [Int] = []
        /// Offset of each tensor info's offset field.
        var tensorOffsetFieldAt: [Int] = []
        /// End of the header (tensor infos), before padding.
        var headerEnd = 0
        /// Start of the data section (aligned).
        var dataOffset = 0
        /// Absolute file offset of each tensor's data.
        var tensorDataAt: [Int] = []
    }

    /// The file bytes and where things are.
    func build() -> (bytes: [UInt8], layout: Layout) {
        var out: [UInt8] = []
        var layout = Layout()
        out += magic
        Self.put(version, into: &out)
        layout.tensorCountAt = out.count
        Self.put(tensorCountOverride ?? UInt64(tensors.count), into: &out)
        layout.kvCountAt = out.count
        Self.put(kvCountOverride ?? UInt64(metadata.count), into: &out)
        for (key, value) in metadata {
            layout.metadataAt.append(out.count)
            Self.putString(key, into: &out)
            Self.put(value.typeID, into: &out)
            Self.putPayload(value, into: &out)
        }
        // Relative data offsets: each tensor at the next aligned position.
        var relative: [Int] = []
        var cursor = 0
        for t in tensors {
            cursor = Self.align(cursor, alignment)
            relative.append(cursor)
            cursor += t.data.count
        }
        for (i, t) in tensors.enumerated() {
            layout.tensorInfoAt.append(out.count)
            Self.putString(t.name, into: &out)
            Self.put(t.nDimsOverride ?? UInt32(t.dims.count), into: &out)
            for d in t.dims { Self.put(d, into: &out) }
            layout.tensorTypeAt.append(out.count)
            Self.put(t.type, into: &out)
            layout.tensorOffsetFieldAt.append(out.count)
            Self.put(t.offsetOverride ?? UInt64(relative[i]), into: &out)
        }
        layout.headerEnd = out.count
        layout.dataOffset = Self.align(out.count, alignment)
        if !tensors.isEmpty {
            out += [UInt8](repeating: 0, count: layout.dataOffset - out.count)
        }
        for (i, t) in tensors.enumerated() {
            let at = layout.dataOffset + relative[i]
            out += [UInt8](repeating: 0, count: at - out.count)
            layout.tensorDataAt.append(at)
            out += t.data
        }
        return (out, layout)
    }

    static func align(_ x: Int, _ a: Int) -> Int { (x + a - 1) / a * a }

    static func put<T: FixedWidthInteger>(_ v: T, into out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out += $0 }
    }

    static func putString(_ s: String, into out: inout [UInt8]) {
        let utf8 = Array(s.utf8)
        put(UInt64(utf8.count), into: &out)
        out += utf8
    }

    /// Writes a value's payload (no type tag).
    static func putPayload(_ v: GGUFTestValue, into out: inout [UInt8]) {
        switch v {
        case .uint8(let x): put(x, into: &out)
        case .int8(let x): put(x, into: &out)
        case .uint16(let x): put(x, into: &out)
        case .int16(let x): put(x, into: &out)
        case .uint32(let x): put(x, into: &out)
        case .int32(let x): put(x, into: &out)
        case .float32(let x): put(x.bitPattern, into: &out)
        case .bool(let x): put(UInt8(x ? 1 : 0), into: &out)
        case .string(let s): putString(s, into: &out)
        case .uint64(let x): put(x, into: &out)
        case .int64(let x): put(x, into: &out)
        case .float64(let x): put(x.bitPattern, into: &out)
        case .array(let elementType, let elements):
            put(elementType, into: &out)
            put(UInt64(elements.count), into: &out)
            for e in elements { putPayload(e, into: &out) }
        case .raw(_, let payload): out += payload
        }
    }
}
