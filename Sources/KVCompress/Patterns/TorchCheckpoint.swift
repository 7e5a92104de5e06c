import Foundation

/// A PyTorch checkpoint as `torch.save` writes it (a zip archive holding `data.pkl`, a pickle, and
/// one file per tensor storage), read without Python: dictionaries, lists, tuples, numbers, strings
/// and tensors (F32, F64, F16, BF16 storages, any strides, read as f32). Anything else the pickle
/// builds (other classes) is kept as an opaque value named by its class.
///
/// Only what trained artifacts need: uncompressed (stored) archives, as `torch.save` writes them, and
/// pickle protocols 2 to 5 without out-of-band buffers.
public struct TorchCheckpoint {
    /// A value of the unpickled object tree.
    public indirect enum Value {
        /// `None`.
        case none
        /// A boolean.
        case bool(Bool)
        /// An integer.
        case int(Int)
        /// A float.
        case float(Double)
        /// A string.
        case string(String)
        /// Bytes.
        case bytes([UInt8])
        /// A list or tuple.
        case list([Value])
        /// A dictionary, in insertion order.
        case dict([(key: Value, value: Value)])
        /// A tensor: its shape and its elements in row-major order.
        case tensor(shape: [Int], values: [Float])
        /// An object of another class (named `module.name`).
        case opaque(String)

        /// The value at string key `key` of a dictionary (nil otherwise).
        public subscript(key: String) -> Value? {
            guard case .dict(let pairs) = self else { return nil }
            return pairs.first { if case .string(key) = $0.key { return true } else { return false } }?.value
        }
    }

    /// Where the checkpoint was read from (for messages).
    public let path: String
    /// The unpickled object.
    public let root: Value

    /// Reads the checkpoint at `path`.
    /// - Throws: `KVError.io` when it cannot be read; `.malformedFile` for an archive or pickle this
    ///   reader does not understand (compressed entries, unknown opcodes, missing storages).
    public init(path: String) throws(KVError) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io(path: path, reason: "cannot read the PyTorch checkpoint")
        }
        self.path = path
        let archive = try Archive(bytes: [UInt8](data), path: path)
        guard let pickleName = archive.entries.keys.first(where: { $0.hasSuffix("data.pkl") }) else {
            throw .malformedFile(path: path, field: "data.pkl", offset: 0, reason: "no data.pkl in the archive (not a torch.save zip file)")
        }
        var machine = Unpickler(bytes: try archive.contents(pickleName), archive: archive, prefix: String(pickleName.dropLast("data.pkl".count)))
        root = try machine.run().value
    }

    /// A stored zip archive's entries.
    struct Archive {
        let bytes: [UInt8]
        let path: String
        /// name -> (data offset, size)
        let entries: [String: (offset: Int, size: Int)]

        init(bytes: [UInt8], path: String) throws(KVError) {
            self.bytes = bytes
            self.path = path
            func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
            func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
            guard bytes.count >= 22, let end = stride(from: bytes.count - 22, through: max(0, bytes.count - 65_557), by: -1)
                .first(where: { u32($0) == 0x0605_4b50 }) else {
                throw .malformedFile(path: path, field: "zip", offset: 0, reason: "no zip end record (not a torch.save file, or truncated)")
            }
            var entries: [String: (offset: Int, size: Int)] = [:]
            var o = u32(end + 16)
            for _ in 0..<u16(end + 10) {
                guard o + 46 <= bytes.count, u32(o) == 0x0201_4b50 else {
                    throw .malformedFile(path: path, field: "zip central directory", offset: o, reason: "bad entry")
                }
                let method = u16(o + 10), size = u32(o + 24), nameLength = u16(o + 28)
                let local = u32(o + 42)
                guard o + 46 + nameLength <= bytes.count, local + 30 <= bytes.count else {
                    throw .malformedFile(path: path, field: "zip central directory", offset: o, reason: "entry past the end")
                }
                let name = String(decoding: bytes[(o + 46)..<(o + 46 + nameLength)], as: UTF8.self)
                guard method == 0 else {
                    throw .malformedFile(path: path, field: name, offset: o, reason: "compressed entry (method \(method)); torch.save stores them")
                }
                let start = local + 30 + u16(local + 26) + u16(local + 28)
                guard start + size <= bytes.count else {
                    throw .malformedFile(path: path, field: name, offset: start, reason: "entry data past the end (truncated?)")
                }
                entries[name] = (start, size)
                o += 46 + nameLength + u16(o + 30) + u16(o + 32)
            }
            self.entries = entries
        }

        func contents(_ name: String) throws(KVError) -> ArraySlice<UInt8> {
            guard let e = entries[name] else {
                throw .malformedFile(path: path, field: name, offset: 0, reason: "missing from the archive")
            }
            return bytes[e.offset..<(e.offset + e.size)]
        }
    }

    /// Mutable containers while unpickling (pickle fills lists and dicts after creating them).
    final class Box {
        var items: [Object] = []
        var pairs: [(Object, Object)] = []
        let isDict: Bool
        init(isDict: Bool) { self.isDict = isDict }
    }

    /// What the pickle machine holds.
    indirect enum Object {
        case mark
        case value(Value)
        case box(Box)
        case tuple([Object])
        case global(String)
        case storage(type: String, key: String)

        /// The finished value.
        var value: Value {
            switch self {
            case .mark: return .none
            case .value(let v): return v
            case .box(let b): return b.isDict ? .dict(b.pairs.map { ($0.0.value, $0.1.value) }) : .list(b.items.map(\.value))
            case .tuple(let items): return .list(items.map(\.value))
            case .global(let name): return .opaque(name)
            case .storage(let type, _): return .opaque(type)
            }
        }
    }

    /// A pickle virtual machine for the opcodes `torch.save` emits.
    struct Unpickler {
        let bytes: ArraySlice<UInt8>
        let archive: Archive
        let prefix: String
        var position: Int
        var stack: [Object] = []
        var memo: [Int: Object] = [:]

        init(bytes: ArraySlice<UInt8>, archive: Archive, prefix: String) {
            self.bytes = bytes
            self.archive = archive
            self.prefix = prefix
            position = bytes.startIndex
        }

        func fail(_ reason: String) -> KVError {
            .malformedFile(path: archive.path, field: "data.pkl", offset: position - bytes.startIndex, reason: reason)
        }

        mutating func take(_ n: Int) throws(KVError) -> ArraySlice<UInt8> {
            guard n >= 0, position + n <= bytes.endIndex else { throw fail("truncated pickle") }
            defer { position += n }
            return bytes[position..<(position + n)]
        }

        mutating func int(_ n: Int) throws(KVError) -> Int {
            let b = try take(n)
            var v = 0
            for (i, x) in b.enumerated() { v |= Int(x) << (8 * i) }
            if n < 8, n == 4, v >= 1 << 31 { v -= 1 << 32 }  // BININT is signed
            return v
        }

        mutating func line() throws(KVError) -> String {
            guard let end = bytes[position...].firstIndex(of: 0x0a) else { throw fail("unterminated line") }
            defer { position = end + 1 }
            return String(decoding: bytes[position..<end], as: UTF8.self)
        }

        mutating func pop() throws(KVError) -> Object {
            guard let top = stack.popLast() else { throw fail("stack underflow") }
            return top
        }

        /// Pops everything down to the last mark.
        mutating func popMark() throws(KVError) -> [Object] {
            guard let m = stack.lastIndex(where: { if case .mark = $0 { return true } else { return false } }) else {
                throw fail("no mark")
            }
            defer { stack.removeSubrange(m...) }
            return Array(stack[(m + 1)...])
        }

        mutating func run() throws(KVError) -> Object {
            while true {
                let op = try take(1).first!
                switch op {
                case 0x80: _ = try take(1)                                   // PROTO
                case 0x95: _ = try take(8)                                   // FRAME
                case 0x2e: return try pop()                                  // STOP
                case 0x28: stack.append(.mark)                               // MARK
                case 0x7d: stack.append(.box(Box(isDict: true)))             // EMPTY_DICT
                case 0x5d: stack.append(.box(Box(isDict: false)))            // EMPTY_LIST
                case 0x29: stack.append(.tuple([]))                          // EMPTY_TUPLE
                case 0x74: stack.append(.tuple(try popMark()))               // TUPLE
                case 0x85: stack.append(.tuple([try pop()]))                 // TUPLE1
                case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))
                case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
                case 0x4e: stack.append(.value(.none))                       // NONE
                case 0x88: stack.append(.value(.bool(true)))                 // NEWTRUE
                case 0x89: stack.append(.value(.bool(false)))                // NEWFALSE
                case 0x4b: stack.append(.value(.int(try int(1))))            // BININT1
                case 0x4d: stack.append(.value(.int(try int(2))))            // BININT2
                case 0x4a: stack.append(.value(.int(try int(4))))            // BININT
                case 0x8a:                                                   // LONG1
                    let n = try int(1)
                    let b = try take(n)
                    guard n <= 8 else { throw fail("integer of \(n) bytes") }
                    var v = 0
                    for (i, x) in b.enumerated() { v |= Int(x) << (8 * i) }
                    if n > 0, n < 8, b.last! & 0x80 != 0 { v -= 1 << (8 * n) }
                    stack.append(.value(.int(v)))
                case 0x47: stack.append(.value(.float(Double(bitPattern: UInt64(bitPattern: Int64(try take(8).reduce(0) { $0 << 8 | Int($1) })))))) // BINFLOAT
                case 0x58: let n = try int(4); stack.append(.value(.string(String(decoding: try take(n), as: UTF8.self))))  // BINUNICODE
                case 0x8c: let n = try int(1); stack.append(.value(.string(String(decoding: try take(n), as: UTF8.self))))  // SHORT_BINUNICODE
                case 0x8d: let n = try int(8); stack.append(.value(.string(String(decoding: try take(n), as: UTF8.self))))  // BINUNICODE8
                case 0x43: let n = try int(1); stack.append(.value(.bytes(Array(try take(n)))))  // SHORT_BINBYTES
                case 0x42: let n = try int(4); stack.append(.value(.bytes(Array(try take(n)))))  // BINBYTES
                case 0x63: stack.append(.global(try line() + "." + (try line())))                // GLOBAL
                case 0x93:                                                                        // STACK_GLOBAL
                    let name = try pop(), module = try pop()
                    guard case .value(.string(let n)) = name, case .value(.string(let m)) = module else { throw fail("bad STACK_GLOBAL") }
                    stack.append(.global(m + "." + n))
                case 0x71: memo[try int(1)] = stack.last                     // BINPUT
                case 0x72: memo[try int(4)] = stack.last                     // LONG_BINPUT
                case 0x94: memo[memo.count] = stack.last                     // MEMOIZE
                case 0x68, 0x6a:                                             // BINGET, LONG_BINGET
                    let key = try int(op == 0x68 ? 1 : 4)
                    guard let v = memo[key] else { throw fail("memo \(key) missing") }
                    stack.append(v)
                case 0x51:                                                   // BINPERSID
                    guard case .tuple(let id) = try pop(), id.count >= 3, case .global(let type) = id[1],
                          case .value(.string(let key)) = id[2] else { throw fail("unknown persistent id") }
                    stack.append(.storage(type: type, key: key))
                case 0x52, 0x81:                                             // REDUCE, NEWOBJ
                    let args = try pop(), callable = try pop()
                    guard case .tuple(let a) = args else { throw fail("call arguments are not a tuple") }
                    stack.append(try call(callable, a))
                case 0x62: _ = try pop()                                     // BUILD: state ignored (metadata)
                case 0x73:                                                   // SETITEM
                    let v = try pop(), k = try pop()
                    guard case .box(let d) = stack.last, d.isDict else { throw fail("SETITEM on a non-dict") }
                    d.pairs.append((k, v))
                case 0x75:                                                   // SETITEMS
                    let items = try popMark()
                    guard case .box(let d) = stack.last, d.isDict, items.count % 2 == 0 else { throw fail("SETITEMS on a non-dict") }
                    for i in stride(from: 0, to: items.count, by: 2) { d.pairs.append((items[i], items[i + 1])) }
                case 0x61:                                                   // APPEND
                    let v = try pop()
                    guard case .box(let l) = stack.last, !l.isDict else { throw fail("APPEND on a non-list") }
                    l.items.append(v)
                case 0x65:                                                   // APPENDS
                    let items = try popMark()
                    guard case .box(let l) = stack.last, !l.isDict else { throw fail("APPENDS on a non-list") }
                    l.items += items
                default:
                    throw fail(String(format: "pickle opcode 0x%02x is not supported", op))
                }
            }
        }

        /// The result of calling a global: tensors, ordered dictionaries and parameters are built;
        /// anything else stays opaque.
        mutating func call(_ callable: Object, _ args: [Object]) throws(KVError) -> Object {
            guard case .global(let name) = callable else { return .value(.opaque("call")) }
            switch name {
            case "collections.OrderedDict":
                return .box(Box(isDict: true))
            case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
                return args.first ?? .value(.none)
            case "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor":
                guard args.count >= 4, case .storage(let type, let key) = args[0], case .value(.int(let offset)) = args[1],
                      case .tuple(let sizeObjects) = args[2], case .tuple(let strideObjects) = args[3] else {
                    throw fail("unexpected tensor arguments")
                }
                let shape = sizeObjects.compactMap { if case .value(.int(let v)) = $0 { return v } else { return nil } }
                let strides = strideObjects.compactMap { if case .value(.int(let v)) = $0 { return v } else { return nil } }
                guard shape.count == sizeObjects.count, strides.count == shape.count else { throw fail("bad tensor shape") }
                return .value(.tensor(shape: shape, values: try tensor(type: type, key: key, offset: offset, shape: shape, strides: strides)))
            default:
                return .value(.opaque(name))
            }
        }

        /// A tensor's elements gathered from its storage file.
        func tensor(type: String, key: String, offset: Int, shape: [Int], strides: [Int]) throws(KVError) -> [Float] {
            let width: Int
            switch type {
            case "torch.FloatStorage": width = 4
            case "torch.DoubleStorage": width = 8
            case "torch.HalfStorage", "torch.BFloat16Storage": width = 2
            default: throw fail("tensor storage \(type) is not supported (float32, float64, float16, bfloat16)")
            }
            let storage = try archive.contents(prefix + "data/" + key)
            // Every element inside the storage, and no more elements than a storage could fill (a
            // hostile shape must not make us allocate or index anything).
            let elements = storage.count / width
            guard offset >= 0, strides.allSatisfy({ $0 >= 0 }), let count = shape.checkedProduct,
                  count <= Swift.max(elements, 1) * 1024,
                  count == 0 || zip(shape, strides).reduce(Optional(offset), { last, ds in
                      last.flatMap { l in
                          let (step, o1) = (ds.0 - 1).multipliedReportingOverflow(by: ds.1)
                          let (sum, o2) = l.addingReportingOverflow(step)
                          return o1 || o2 ? nil : sum
                      }
                  }).map({ $0 < elements }) == true else {
                throw fail("tensor of shape \(shape), strides \(strides) at offset \(offset) does not fit its storage \(key) "
                    + "(\(elements) elements)")
            }
            var out = [Float](repeating: 0, count: count)
            var index = [Int](repeating: 0, count: shape.count)
            for i in 0..<count {
                let element = offset + zip(index, strides).reduce(0) { $0 + $1.0 * $1.1 }
                let at = storage.startIndex + element * width
                var bits: UInt64 = 0
                for b in 0..<width { bits |= UInt64(storage[at + b]) << (8 * UInt64(b)) }
                switch type {
                case "torch.FloatStorage": out[i] = Float(bitPattern: UInt32(bits))
                case "torch.DoubleStorage": out[i] = Float(Double(bitPattern: bits))
                case "torch.BFloat16Storage": out[i] = Float(bitPattern: UInt32(bits) << 16)
                default: out[i] = Self.half(UInt16(bits))
                }
                var d = shape.count - 1
                while d >= 0 {
                    index[d] += 1
                    if index[d] < shape[d] { break }
                    index[d] = 0
                    d -= 1
                }
            }
            return out
        }

        /// An IEEE half's value.
        static func half(_ h: UInt16) -> Float {
            let sign: Float = h & 0x8000 != 0 ? -1 : 1
            let exponent = Int(h >> 10 & 0x1f), mantissa = Float(h & 0x3ff)
            if exponent == 0 { return sign * mantissa * 0x1p-24 }
            if exponent == 31 { return mantissa == 0 ? sign * .infinity : .nan }
            return sign * (1 + mantissa / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
        }
    }
}
