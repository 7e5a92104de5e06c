/// A small strict JSON reader (RFC 8259) that remembers the byte offset of every value, so that
/// errors in token-id files can say exactly where they are.
///
/// Nesting deeper than ``maximumDepth`` is rejected instead of recursing without bound.
enum JSONReader {
    /// A parsed value and the byte offset where it starts.
    struct Node {
        indirect enum Value {
            case object([(key: String, node: Node)])
            case array([Node])
            case string(String)
            /// A number, with its source text (integers are read from the text exactly).
            case number(String)
            case bool(Bool)
            case null
        }

        let value: Value
        let offset: Int

        /// The member `key` of an object (nil for other values or a missing key).
        subscript(key: String) -> Node? {
            if case .object(let members) = value { return members.first { $0.key == key }?.node }
            return nil
        }

        /// The value as an integer, when it is a number written without fraction or exponent.
        var integer: Int64? {
            if case .number(let text) = value { return Int64(text) }
            return nil
        }
    }

    /// What went wrong and where.
    struct Failure: Error {
        let offset: Int
        let message: String
    }

    static let maximumDepth = 512

    /// Parses a whole document (one value, surrounded only by whitespace).
    static func parse(_ bytes: [UInt8]) throws(Failure) -> Node {
        var p = Parser(bytes: bytes)
        p.skipSpace()
        let node = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == bytes.count else { throw Failure(offset: p.i, message: "unexpected data after the JSON value") }
        return node
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        func fail(_ message: String, at offset: Int? = nil) -> Failure {
            Failure(offset: offset ?? i, message: i >= bytes.count && offset == nil ? "unexpected end of file (\(message))" : message)
        }

        mutating func expect(_ literal: String, _ value: Node.Value) throws(Failure) -> Node {
            let start = i
            for b in literal.utf8 {
                guard i < bytes.count, bytes[i] == b else { throw fail("invalid literal, expected '\(literal)'", at: start) }
                i += 1
            }
            return Node(value: value, offset: start)
        }

        mutating func value(depth: Int) throws(Failure) -> Node {
            guard depth < JSONReader.maximumDepth else { throw fail("nesting deeper than \(JSONReader.maximumDepth) levels") }
            guard i < bytes.count else { throw fail("expected a value") }
            let start = i
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(key: String, node: Node)] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return Node(value: .object(members), offset: start) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                    let key = try string()
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
                    i += 1
                    skipSpace()
                    members.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    guard i < bytes.count else { throw fail("expected ',' or '}'") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard bytes[i] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
                    i += 1
                    return Node(value: .object(members), offset: start)
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [Node] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return Node(value: .array(items), offset: start) }
                while true {
                    skipSpace()
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < bytes.count else { throw fail("expected ',' or ']'") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    guard bytes[i] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
                    i += 1
                    return Node(value: .array(items), offset: start)
                }
            case UInt8(ascii: "\""):
                return Node(value: .string(try string()), offset: start)
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                return Node(value: .number(try number()), offset: start)
            default:
                throw fail("unexpected character '\(Unicode.Scalar(bytes[i]))'")
            }
        }

        mutating func digits() -> Int {
            let s = i
            while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) { i += 1 }
            return i - s
        }

        mutating func number() throws(Failure) -> String {
            let start = i
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            let intStart = i
            let n = digits()
            guard n > 0 else { throw fail("expected digits") }
            if n > 1 && bytes[intStart] == UInt8(ascii: "0") { throw fail("leading zero in a number", at: intStart) }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { throw fail("expected digits after '.'") }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard digits() > 0 else { throw fail("expected digits in the exponent") }
            }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard i + 4 <= bytes.count else { throw fail("truncated \\u escape") }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: throw fail("invalid hex digit in a \\u escape")
                }
                v = v * 16 + UInt32(d)
                i += 1
            }
            return v
        }

        mutating func string() throws(Failure) -> String {
            let start = i
            i += 1  // opening quote
            var out: [UInt8] = []
            while true {
                guard i < bytes.count else { throw fail("unterminated string starting at byte \(start)") }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { i += 1; break }
                if c < 0x20 { throw fail("control character in a string") }
                if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
                i += 1
                guard i < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar), i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"),
                       bytes[i + 1] == UInt8(ascii: "u") {
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("invalid surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape (lone surrogate)") }
                    out += Array(String(Character(u)).utf8)
                default:
                    throw fail("invalid escape '\\\(Unicode.Scalar(e))'", at: i - 2)
                }
            }
            guard let s = String(validating: out, as: UTF8.self) else {
                throw fail("invalid UTF-8 in the string starting at byte \(start)", at: start)
            }
            return s
        }
    }
}
