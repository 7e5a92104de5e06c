/// A GGUF metadata value: every scalar type, strings, and (nested) arrays.
public enum GGUFValue: Sendable, Equatable {
    /// Type 0.
    case uint8(UInt8)
    /// Type 1.
    case int8(Int8)
    /// Type 2.
    case uint16(UInt16)
    /// Type 3.
    case int16(Int16)
    /// Type 4.
    case uint32(UInt32)
    /// Type 5.
    case int32(Int32)
    /// Type 6.
    case float32(Float)
    /// Type 7.
    case bool(Bool)
    /// Type 8 (UTF-8; invalid sequences are repaired with U+FFFD).
    case string(String)
    /// Type 9: elements of one type (possibly arrays themselves).
    case array([GGUFValue])
    /// Type 10.
    case uint64(UInt64)
    /// Type 11.
    case int64(Int64)
    /// Type 12.
    case float64(Double)

    /// The value as an integer, when it is an integer type that fits in `Int`.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// The value as a floating-point number, when it is numeric.
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return intValue.map(Double.init)
        }
    }

    /// The string, when it is one.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The elements, when it is an array.
    public var arrayValue: [GGUFValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

extension GGUFValue {
    /// The GGUF type name of the value, for messages (`uint32`, `string`, `array of string`...).
    var typeName: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .float32: return "float32"
        case .bool: return "bool"
        case .string: return "string"
        case .array(let elements): return elements.first.map { "array of \($0.typeName)" } ?? "array"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float64: return "float64"
        }
    }
}
