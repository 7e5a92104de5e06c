import Foundation
import XCTest
@testable import KVModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tests of the GGUF reader against synthetic files written by `GGUFTestWriter` (every metadata
/// type, every tensor type, truncation at every header byte, targeted corruption) and against the
/// real default model. Dequantization is checked against scalar double-precision decoders written
/// here from the format description.
final class GGUFReaderTests: XCTestCase {
    private var dir: URL!
    private var counter = 0

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("GGUFReaderTests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    // MARK: - helpers

    private func write(_ bytes: [UInt8], name: String? = nil) throws -> String {
        counter += 1
        let url = dir.appendingPathComponent(name ?? "f\(counter).gguf")
        try Data(bytes).write(to: url)
        return url.path
    }

    private func open(_ bytes: [UInt8]) throws -> Result<GGUFFile, KVError> {
        let path = try write(bytes)
        do {
            return .success(try GGUFFile(path: path))
        } catch {
            return .failure(error)
        }
    }

    /// Parses `bytes` in memory (no file), returning the error when there is one.
    private static func parseInMemory(_ bytes: [UInt8]) -> KVError? {
        do {
            _ = try bytes.withUnsafeBytes { raw in try GGUFParser.parse(raw, path: "memory") }
            return nil
        } catch let error as KVError {
            return error
        } catch {
            XCTFail("untyped error \(error)")
            return nil
        }
    }

    /// Opens `bytes`, expects `.malformedFile`, checks the field contains `field` (when given), the
    /// offset (exact or an upper bound) and the reason, and returns (field, offset, reason).
    @discardableResult
    private func assertMalformed(_ bytes: [UInt8], field: String? = nil, offset: Int? = nil,
                                 maxOffset: Int? = nil, reason: String? = nil, _ message: String = "",
                                 file: StaticString = #filePath, line: UInt = #line) throws -> (String, Int, String)? {
        switch try open(bytes) {
        case .success:
            XCTFail("expected malformedFile, the file opened. \(message)", file: file, line: line)
            return nil
        case .failure(let error):
            guard case let .malformedFile(_, f, o, r) = error else {
                XCTFail("expected malformedFile, got \(error). \(message)", file: file, line: line)
                return nil
            }
            XCTAssertFalse(f.isEmpty, "empty field name. \(message)", file: file, line: line)
            XCTAssertFalse(r.isEmpty, "empty reason. \(message)", file: file, line: line)
            XCTAssertGreaterThanOrEqual(o, 0, message, file: file, line: line)
            if let field {
                XCTAssertTrue(f.contains(field), "field '\(f)' does not contain '\(field)' (\(r)). \(message)",
                              file: file, line: line)
            }
            if let offset { XCTAssertEqual(o, offset, "offset. \(message)", file: file, line: line) }
            if let maxOffset {
                XCTAssertLessThanOrEqual(o, maxOffset, "offset past \(maxOffset) for '\(f)'. \(message)",
                                         file: file, line: line)
            }
            if let reason {
                XCTAssertTrue(r.contains(reason), "reason '\(r)' does not contain '\(reason)'. \(message)",
                              file: file, line: line)
            }
            return (f, o, r)
        }
    }

    private static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        withUnsafeBytes(of: v.littleEndian) { Array($0) }
    }

    private static func patch<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, _ v: T) -> [UInt8] {
        var b = bytes
        b.replaceSubrange(offset..<(offset + MemoryLayout<T>.size), with: le(v))
        return b
    }

    // MARK: - reference decoders (double precision, by hand from the bit layouts)

    /// IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
    static func f16(_ h: UInt16) -> Double {
        let sign: Double = (h >> 15) == 1 ? -1 : 1
        let e = Int((h >> 10) & 0x1F)
        let f = Double(h & 0x3FF)
        if e == 0 { return sign * f * 0x1p-24 }
        if e == 31 { return f == 0 ? sign * .infinity : .nan }
        return sign * (1 + f / 1024) * pow(2.0, Double(e - 15))
    }

    /// bfloat16: 1 sign, 8 exponent (bias 127), 7 mantissa bits.
    static func bf16(_ b: UInt16) -> Double {
        let sign: Double = (b >> 15) == 1 ? -1 : 1
        let e = Int((b >> 7) & 0xFF)
        let f = Double(b & 0x7F)
        if e == 0 { return sign * f * 0x1p-133 }
        if e == 255 { return f == 0 ? sign * .infinity : .nan }
        return sign * (1 + f / 128) * pow(2.0, Double(e - 127))
    }

    /// IEEE single: 1 sign, 8 exponent (bias 127), 23 mantissa bits.
    static func f32(_ u: UInt32) -> Double {
        let sign: Double = (u >> 31) == 1 ? -1 : 1
        let e = Int((u >> 23) & 0xFF)
        let f = Double(u & 0x7F_FFFF)
        if e == 0 { return sign * f * 0x1p-149 }
        if e == 255 { return f == 0 ? sign * .infinity : .nan }
        return sign * (1 + f * 0x1p-23) * pow(2.0, Double(e - 127))
    }

    private static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    private static func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    /// Reference dequantization of `count` elements of GGML type `type` from raw bytes.
    static func reference(type: UInt32, bytes: [UInt8], count: Int) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(count)
        switch type {
        case 0:
            for i in 0..<count { out.append(f32(u32(bytes, 4 * i))) }
        case 1:
            for i in 0..<count { out.append(f16(u16(bytes, 2 * i))) }
        case 30:
            for i in 0..<count { out.append(bf16(u16(bytes, 2 * i))) }
        case 8:  // Q8_0: f16 d, 32 x int8; x = d * q
            for b in 0..<(count / 32) {
                let base = 34 * b
                let d = f16(u16(bytes, base))
                for j in 0..<32 { out.append(d * Double(Int8(bitPattern: bytes[base + 2 + j]))) }
            }
        case 2:  // Q4_0: f16 d, 16 bytes; element j = low nibble of byte j, j+16 = high nibble; x = d*(n-8)
            for b in 0..<(count / 32) {
                let base = 18 * b
                let d = f16(u16(bytes, base))
                var block = [Double](repeating: 0, count: 32)
                for j in 0..<16 {
                    let q = bytes[base + 2 + j]
                    block[j] = d * Double(Int(q & 0x0F) - 8)
                    block[j + 16] = d * Double(Int(q >> 4) - 8)
                }
                out += block
            }
        case 3:  // Q4_1: f16 d, f16 m, 16 bytes; x = d*n + m, same nibble order as Q4_0
            for b in 0..<(count / 32) {
                let base = 20 * b
                let d = f16(u16(bytes, base))
                let m = f16(u16(bytes, base + 2))
                var block = [Double](repeating: 0, count: 32)
                for j in 0..<16 {
                    let q = bytes[base + 4 + j]
                    block[j] = d * Double(q & 0x0F) + m
                    block[j + 16] = d * Double(q >> 4) + m
                }
                out += block
            }
        default:
            preconditionFailure("no reference decoder for type \(type)")
        }
        return out
    }

    /// `got` equals the reference: exactly for every type but Q4_1, whose `d*n + m` may be rounded
    /// once to f32 (1 ulp).
    private func assertMatches(_ got: [Float], _ ref: [Double], type: UInt32, _ name: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, ref.count, name, file: file, line: line)
        var failures = 0
        for i in 0..<min(got.count, ref.count) {
            let g = got[i], r = ref[i]
            let ok: Bool
            if r.isNaN {
                ok = g.isNaN
            } else if type == 3 {
                let rf = Float(r)
                ok = abs(Double(g) - r) <= Double(rf.ulp) || g == rf
            } else {
                ok = Double(g) == r
            }
            if !ok {
                failures += 1
                if failures <= 5 {
                    XCTFail("\(name)[\(i)]: got \(g), reference \(r)", file: file, line: line)
                }
            }
        }
        XCTAssertEqual(failures, 0, "\(name): \(failures) mismatching elements", file: file, line: line)
    }

    // MARK: - synthetic content

    /// Deterministic SplitMix64.
    struct RNG {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
        mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }

    /// A finite half (bits), including zeros, subnormals, negatives and extremes.
    private static func finiteHalf(_ rng: inout RNG) -> UInt16 {
        let specials: [UInt16] = [0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0x2E66, 0x1800]
        if rng.int(5) == 0 { return specials[rng.int(specials.count)] }
        let sign = UInt16(rng.int(2)) << 15
        let exp = UInt16(1 + rng.int(24)) << 10  // up to 2^9: keeps d*q well inside f16/f32 range
        return sign | exp | UInt16(rng.int(1024))
    }

    /// Raw bytes for `count` elements of `type`, with special values where the type has them.
    static func tensorBytes(type: UInt32, count: Int, rng: inout RNG) -> [UInt8] {
        var out: [UInt8] = []
        switch type {
        case 0:
            let specials: [UInt32] = [0x0000_0000, 0x8000_0000, 0x0000_0001, 0x807F_FFFF, 0x3F80_0000,
                                      0x7F7F_FFFF, 0xFF80_0000, 0x7F80_0000, 0x7FC0_0001, 0xC2F6_E979]
            for i in 0..<count {
                let v = i < specials.count ? specials[i] : UInt32(truncatingIfNeeded: rng.next())
                out += le(v)
            }
        case 1:
            let specials: [UInt16] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF,
                                      0x7C00, 0xFC00, 0x7E00, 0x3555, 0xC000, 0x8001]
            for i in 0..<count {
                out += le(i < specials.count ? specials[i] : UInt16(truncatingIfNeeded: rng.next()))
            }
        case 30:
            let specials: [UInt16] = [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x3F80, 0x7F7F, 0xFF7F,
                                      0x7F80, 0xFF80, 0x7FC0, 0x4049, 0xC000, 0x8001]
            for i in 0..<count {
                out += le(i < specials.count ? specials[i] : UInt16(truncatingIfNeeded: rng.next()))
            }
        case 8:
            for _ in 0..<(count / 32) {
                out += le(finiteHalf(&rng))
                for j in 0..<32 { out.append(j == 0 ? 0x80 : j == 1 ? 0x7F : rng.byte()) }  // -128, 127
            }
        case 2:
            for _ in 0..<(count / 32) {
                out += le(finiteHalf(&rng))
                for j in 0..<16 { out.append(j == 0 ? 0xF0 : j == 1 ? 0x0F : rng.byte()) }
            }
        case 3:
            for _ in 0..<(count / 32) {
                out += le(finiteHalf(&rng))
                out += le(finiteHalf(&rng))
                for j in 0..<16 { out.append(j == 0 ? 0xF0 : j == 1 ? 0x0F : rng.byte()) }
            }
        default:
            preconditionFailure("no generator for type \(type)")
        }
        return out
    }

    private static func nested(depth: Int) -> GGUFTestValue {
        depth == 1 ? .array(elementType: 5, [.int32(-7), .int32(9)])
            : .array(elementType: 9, [nested(depth: depth - 1)])
    }

    /// Every metadata value type, arrays of every scalar type, strings, nested and empty arrays.
    static func allMetadata() -> [(key: String, value: GGUFTestValue)] {
        [
            ("general.architecture", .string("llama")),
            ("t.uint8", .uint8(0xAB)),
            ("t.uint8.max", .uint8(.max)),
            ("t.int8", .int8(-128)),
            ("t.int8.max", .int8(127)),
            ("t.uint16", .uint16(0xBEEF)),
            ("t.int16", .int16(-12345)),
            ("t.uint32", .uint32(0xDEAD_BEEF)),
            ("t.int32", .int32(.min)),
            ("t.float32", .float32(-1.5e-3)),
            ("t.float32.subnormal", .float32(Float(bitPattern: 0x0000_0003))),
            ("t.float32.negzero", .float32(-0.0)),
            ("t.float32.inf", .float32(-.infinity)),
            ("t.float32.nan", .float32(Float(bitPattern: 0x7FC0_1234))),
            ("t.bool.true", .bool(true)),
            ("t.bool.false", .bool(false)),
            ("t.string", .string("héllo, 世界 🎉 \u{0}tail")),
            ("t.string.empty", .string("")),
            ("t.uint64", .uint64(.max)),
            ("t.int64", .int64(.min)),
            ("t.float64", .float64(-.pi)),
            ("t.arr.uint8", .array(elementType: 0, [.uint8(0), .uint8(1), .uint8(255)])),
            ("t.arr.int8", .array(elementType: 1, [.int8(-128), .int8(0), .int8(127)])),
            ("t.arr.uint16", .array(elementType: 2, [.uint16(0), .uint16(65535), .uint16(4660)])),
            ("t.arr.int16", .array(elementType: 3, [.int16(-32768), .int16(32767)])),
            ("t.arr.uint32", .array(elementType: 4, [.uint32(0), .uint32(.max), .uint32(49152)])),
            ("t.arr.int32", .array(elementType: 5, [.int32(.min), .int32(-1), .int32(.max)])),
            ("t.arr.float32", .array(elementType: 6, [.float32(1), .float32(-0.25), .float32(.greatestFiniteMagnitude)])),
            ("t.arr.bool", .array(elementType: 7, [.bool(true), .bool(false), .bool(true)])),
            ("t.arr.string", .array(elementType: 8, [.string("<s>"), .string(""), .string("Ġthe"), .string("🎉")])),
            ("t.arr.uint64", .array(elementType: 10, [.uint64(0), .uint64(.max)])),
            ("t.arr.int64", .array(elementType: 11, [.int64(.min), .int64(.max)])),
            ("t.arr.float64", .array(elementType: 12, [.float64(1e300), .float64(-.leastNonzeroMagnitude)])),
            ("t.arr.nested", .array(elementType: 9, [
                .array(elementType: 5, [.int32(1), .int32(2), .int32(3)]),
                .array(elementType: 5, []),
                .array(elementType: 8, [.string("x"), .string("yz")]),
                .array(elementType: 9, [.array(elementType: 7, [.bool(false)])]),
            ])),
            ("t.arr.deep", nested(depth: GGUFParser.maxArrayDepth)),
            ("t.arr.empty.uint8", .array(elementType: 0, [])),
            ("t.arr.empty.string", .array(elementType: 8, [])),
            ("t.arr.empty.array", .array(elementType: 9, [])),
            ("t.arr.empty.float64", .array(elementType: 12, [])),
        ]
    }

    /// What the reader should return for a written value.
    static func expected(_ v: GGUFTestValue) -> GGUFValue {
        switch v {
        case .uint8(let x): return .uint8(x)
        case .int8(let x): return .int8(x)
        case .uint16(let x): return .uint16(x)
        case .int16(let x): return .int16(x)
        case .uint32(let x): return .uint32(x)
        case .int32(let x): return .int32(x)
        case .float32(let x): return .float32(x)
        case .bool(let x): return .bool(x)
        case .string(let x): return .string(x)
        case .uint64(let x): return .uint64(x)
        case .int64(let x): return .int64(x)
        case .float64(let x): return .float64(x)
        case .array(_, let e): return .array(e.map(expected))
        case .raw: preconditionFailure("raw values have no expected reading")
        }
    }

    /// Tensors of every type, 1-D to 4-D.
    static func allTensors(seed: UInt64) -> [GGUFTestTensor] {
        var rng = RNG(state: seed)
        let specs: [(String, UInt32, [UInt64])] = [
            ("f32.vec", 0, [13]),
            ("f32.mat", 0, [5, 3]),
            ("f16.vec", 1, [37]),
            ("f16.mat", 1, [6, 4]),
            ("bf16.vec", 30, [29]),
            ("bf16.mat", 30, [8, 3]),
            ("q8_0.vec", 8, [64]),
            ("q8_0.mat", 8, [96, 3]),
            ("q4_0.vec", 2, [32]),
            ("q4_0.mat", 2, [64, 5]),
            ("q4_1.vec", 3, [128]),
            ("q4_1.mat", 3, [32, 7]),
            ("f32.3d", 0, [2, 3, 4]),
            ("q8_0.4d", 8, [32, 2, 1, 3]),
        ]
        return specs.map { name, type, dims in
            let n = Int(dims.reduce(1, *))
            return GGUFTestTensor(name: name, dims: dims, type: type,
                                  data: tensorBytes(type: type, count: n, rng: &rng))
        }
    }

    /// A valid file with all metadata and tensors; `alignment` nil means the default (no key).
    static func validWriter(version: UInt32 = 3, alignment: Int? = 64, seed: UInt64 = 1) -> GGUFTestWriter {
        var w = GGUFTestWriter()
        w.version = version
        w.metadata = allMetadata()
        if let alignment {
            w.metadata.insert(("general.alignment", .uint32(UInt32(alignment))), at: 1)
            w.alignment = alignment
        }
        w.tensors = allTensors(seed: seed)
        return w
    }

    // MARK: - 1. valid files read back

    func testValidFilesReadBack() throws {
        let configs: [(version: UInt32, alignment: Int?)] = [(3, 64), (3, nil), (2, nil), (3, 256), (2, 16)]
        for (ci, config) in configs.enumerated() {
            let w = Self.validWriter(version: config.version, alignment: config.alignment, seed: UInt64(ci + 1))
            let (bytes, layout) = w.build()
            let label = "v\(config.version) alignment \(config.alignment.map(String.init) ?? "default")"
            let g = try GGUFFile(path: try write(bytes))

            XCTAssertEqual(g.version, config.version, label)
            XCTAssertEqual(g.alignment, config.alignment ?? 32, label)
            XCTAssertEqual(g.fileSize, bytes.count, label)
            XCTAssertEqual(g.dataOffset, layout.dataOffset, label)
            XCTAssertEqual(g.dataOffset % g.alignment, 0, label)

            // Metadata: same keys in the same order, every value equal.
            XCTAssertEqual(g.metadata.map(\.key), w.metadata.map(\.key), label)
            for (key, value) in w.metadata {
                let got = try XCTUnwrap(g.value(key), "\(label): \(key) missing")
                if key == "t.float32.nan" {
                    guard case .float32(let f) = got else { XCTFail("\(key): \(got)"); continue }
                    XCTAssertEqual(f.bitPattern, 0x7FC0_1234, label)
                } else if key == "t.float32.negzero" {
                    guard case .float32(let f) = got else { XCTFail("\(key): \(got)"); continue }
                    XCTAssertEqual(f.bitPattern, 0x8000_0000, label)
                } else {
                    XCTAssertEqual(got, Self.expected(value), "\(label): \(key)")
                }
            }
            XCTAssertNil(g.value("t.absent"))

            // Tensor infos.
            XCTAssertEqual(g.tensors.count, w.tensors.count, label)
            for (i, t) in w.tensors.enumerated() {
                let info = try g.info(t.name)
                XCTAssertEqual(g.tensors[i], info, label)
                XCTAssertEqual(info.name, t.name)
                XCTAssertEqual(info.dimensions, t.dims.map { Int($0) }, "\(label): \(t.name)")
                XCTAssertEqual(info.type.rawValue, t.type, "\(label): \(t.name)")
                XCTAssertEqual(info.fileOffset, layout.tensorDataAt[i], "\(label): \(t.name)")
                XCTAssertEqual(info.fileOffset % g.alignment, 0, "\(label): \(t.name)")
                XCTAssertEqual((info.fileOffset - g.dataOffset) % g.alignment, 0, "\(label): \(t.name)")
                XCTAssertEqual(info.byteCount, t.data.count, "\(label): \(t.name)")
                XCTAssertEqual(info.elementCount, Int(t.dims.reduce(1, *)), "\(label): \(t.name)")
                XCTAssertTrue(g.hasTensor(t.name))
                XCTAssertEqual(Array(try g.data(t.name)), t.data, "\(label): \(t.name) bytes")
                let ref = Self.reference(type: t.type, bytes: t.data, count: info.elementCount)
                assertMatches(try g.dequantized(t.name), ref, type: t.type, "\(label): \(t.name)")
            }
            XCTAssertFalse(g.hasTensor("absent"))
        }
    }

    func testTypedAccessors() throws {
        let (bytes, _) = Self.validWriter().build()
        let g = try GGUFFile(path: try write(bytes))
        XCTAssertEqual(try g.int("t.uint32"), 0xDEAD_BEEF)
        XCTAssertEqual(try g.int("t.int8"), -128)
        XCTAssertEqual(try g.int("t.int64"), Int(Int64.min))
        XCTAssertEqual(try g.int("general.alignment"), 64)
        XCTAssertEqual(try g.string("general.architecture"), "llama")
        XCTAssertEqual(try g.float("t.float32"), -1.5e-3)
        XCTAssertEqual(try g.float("t.uint16"), 48879)
        XCTAssertEqual(try g.array("t.arr.string").count, 4)
        XCTAssertEqual(try g.array("t.arr.empty.array").count, 0)
        XCTAssertNil(GGUFValue.uint64(.max).intValue)  // does not fit in Int
        func assertUnsupportedModel(_ body: () throws(KVError) -> Void, _ what: String) {
            do {
                try body()
                XCTFail("\(what): expected unsupportedModel")
            } catch {
                guard case .unsupportedModel = error else { return XCTFail("\(what): \(error)") }
            }
        }
        assertUnsupportedModel({ () throws(KVError) in _ = try g.int("t.string") }, "int of string")
        assertUnsupportedModel({ () throws(KVError) in _ = try g.string("t.uint8") }, "string of int")
        assertUnsupportedModel({ () throws(KVError) in _ = try g.float("t.arr.uint8") }, "float of array")
        assertUnsupportedModel({ () throws(KVError) in _ = try g.array("absent") }, "missing key")
        assertUnsupportedModel({ () throws(KVError) in _ = try g.info("absent") }, "missing tensor")
        assertUnsupportedModel({ () throws(KVError) in _ = try g.dequantized("absent") }, "missing tensor data")
    }

    func testInvalidUTF8StringIsRepaired() throws {
        var w = GGUFTestWriter()
        w.metadata = [("bad.utf8", .raw(type: 8, payload: Self.le(UInt64(4)) + [0x61, 0xFF, 0xC3, 0x62]))]
        let g = try GGUFFile(path: try write(w.build().bytes))
        let s = try g.string("bad.utf8")
        XCTAssertTrue(s.hasPrefix("a") && s.hasSuffix("b") && s.contains("\u{FFFD}"), s)
    }

    // MARK: - 2. truncation

    func testTruncationEverywhereIsMalformed() throws {
        let w = Self.validWriter(alignment: 64)
        let (bytes, layout) = w.build()
        XCTAssertGreaterThan(layout.dataOffset, layout.headerEnd)  // there is padding to cut into
        XCTAssertGreaterThan(layout.headerEnd, 1000)  // the header (every byte of which is cut) is substantial
        // Every byte offset of the header and its padding.
        var cuts = Array(0..<layout.dataOffset)
        // Several inside (and at the edges of) each tensor's data and the padding between them.
        for (i, t) in w.tensors.enumerated() {
            let s = layout.tensorDataAt[i], e = s + t.data.count
            cuts += [s, s + 1, s + t.data.count / 2, e - 1]
            if i + 1 < w.tensors.count { cuts += [e, (e + layout.tensorDataAt[i + 1]) / 2] }
        }
        cuts = Array(Set(cuts.filter { $0 < bytes.count })).sorted()

        for cut in cuts {
            let truncated = Array(bytes[0..<cut])
            if cut >= layout.headerEnd {
                // Data missing: the first tensor whose data is not wholly inside the file is named.
                let i = try XCTUnwrap(w.tensors.indices.first { layout.tensorDataAt[$0] + w.tensors[$0].data.count > cut })
                try assertMalformed(truncated, field: "'\(w.tensors[i].name)'", maxOffset: cut, "cut at \(cut)")
            } else if cut % 8 == 0 {
                try assertMalformed(truncated, maxOffset: cut, "cut at \(cut)")
            } else {
                // The other header cuts go straight to the parser (no file), to keep the test fast.
                guard case let .malformedFile(_, field, offset, _) = Self.parseInMemory(truncated) else {
                    XCTFail("cut at \(cut): not malformedFile")
                    continue
                }
                XCTAssertFalse(field.isEmpty, "cut at \(cut)")
                XCTAssertLessThanOrEqual(offset, cut, "cut at \(cut): \(field)")
            }
        }
        // The whole file is fine.
        XCTAssertNoThrow(try GGUFFile(path: try write(bytes)))
    }

    // MARK: - 3. corruption

    /// A small valid file: two metadata entries and two tensors.
    private static func smallWriter() -> GGUFTestWriter {
        var w = GGUFTestWriter()
        w.metadata = [("general.architecture", .string("llama")), ("n", .uint32(3))]
        var rng = RNG(state: 7)
        w.tensors = [
            GGUFTestTensor(name: "a", dims: [4, 2], type: 0, data: tensorBytes(type: 0, count: 8, rng: &rng)),
            GGUFTestTensor(name: "b", dims: [32], type: 8, data: tensorBytes(type: 8, count: 32, rng: &rng)),
        ]
        return w
    }

    private static func smallWriter(metadata value: GGUFTestValue, key: String = "bad") -> GGUFTestWriter {
        var w = smallWriter()
        w.metadata.append((key, value))
        return w
    }

    private static func smallWriter(tensor edit: (inout GGUFTestTensor) -> Void) -> GGUFTestWriter {
        var w = smallWriter()
        edit(&w.tensors[0])
        return w
    }

    private static func maxRSSBytes() -> Int {
        var usage = rusage()
        #if canImport(Darwin)
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
        #else
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
        #endif
    }

    func testSmallValidFileOpens() throws {
        let g = try GGUFFile(path: try write(Self.smallWriter().build().bytes))
        XCTAssertEqual(g.tensors.map(\.name), ["a", "b"])
    }

    func testCorruptHeader() throws {
        let rss0 = Self.maxRSSBytes()
        let (valid, layout) = Self.smallWriter().build()

        // Magic and version.
        var w = Self.smallWriter()
        w.magic = Array("GGUG".utf8)
        try assertMalformed(w.build().bytes, field: "magic", offset: 0)
        w.magic = Array("FUGG".utf8)
        try assertMalformed(w.build().bytes, field: "magic", offset: 0)
        for v: UInt32 in [0, 1, 4, .max] {
            try assertMalformed(Self.patch(valid, at: 4, v), field: "version", offset: 4, "version \(v)")
        }

        // Counts far beyond what the file holds.
        for n: UInt64 in [1 << 62, 1 << 40, .max, UInt64(valid.count)] {
            try assertMalformed(Self.patch(valid, at: layout.tensorCountAt, n), field: "tensor_count",
                                offset: layout.tensorCountAt, "tensor_count \(n)")
            try assertMalformed(Self.patch(valid, at: layout.kvCountAt, n), field: "metadata_kv_count",
                                offset: layout.kvCountAt, "kv_count \(n)")
        }
        // Counts a little too large (plausible, but the entries run off the end).
        try assertMalformed(Self.patch(valid, at: layout.kvCountAt, UInt64(3)), maxOffset: valid.count)
        try assertMalformed(Self.patch(valid, at: layout.tensorCountAt, UInt64(3)), maxOffset: valid.count)

        // Empty file.
        try assertMalformed([], field: "magic", offset: 0)
        try assertMalformed(Array(valid[0..<3]), field: "magic", offset: 0)

        XCTAssertLessThan(Self.maxRSSBytes() - rss0, 256 << 20, "a corrupt header made the reader allocate a lot")
    }

    func testCorruptMetadata() throws {
        let rss0 = Self.maxRSSBytes()
        let (valid, layout) = Self.smallWriter().build()

        // String lengths of 2^63 (a key, a value, a tensor name) and other huge lengths.
        for n: UInt64 in [1 << 63, .max, 1 << 40, UInt64(valid.count)] {
            try assertMalformed(Self.patch(valid, at: layout.metadataAt[0], n), field: "string length",
                                offset: layout.metadataAt[0], "key length \(n)")
            try assertMalformed(Self.patch(valid, at: layout.tensorInfoAt[0], n), field: "string length",
                                offset: layout.tensorInfoAt[0], "tensor name length \(n)")
        }
        let hugeString = Self.smallWriter(metadata: .raw(type: 8, payload: Self.le(UInt64(1) << 63) + Array("abc".utf8)))
        try assertMalformed(hugeString.build().bytes, field: "'bad'", reason: "cannot fit")

        // Array counts of 2^40, for scalar, string and array elements.
        for elementType: UInt32 in [0, 6, 7, 8, 9, 12] {
            let w = Self.smallWriter(metadata: .raw(type: 9, payload: Self.le(elementType) + Self.le(UInt64(1) << 40) + [1, 0, 0, 0]))
            try assertMalformed(w.build().bytes, field: "array length", reason: "cannot fit", "element type \(elementType)")
        }
        // An array of strings whose later element has a huge length.
        let arrString = Self.smallWriter(metadata: .raw(
            type: 9, payload: Self.le(UInt32(8)) + Self.le(UInt64(2)) + Self.le(UInt64(1)) + [0x41] + Self.le(UInt64(1) << 63)))
        try assertMalformed(arrString.build().bytes, field: "'bad'[1]", reason: "cannot fit")

        // Unknown metadata value types.
        for type: UInt32 in [13, 99, .max] {
            let w = Self.smallWriter(metadata: .raw(type: type, payload: [0, 0, 0, 0, 0, 0, 0, 0]))
            let (_, bad) = w.build()
            try assertMalformed(w.build().bytes, field: "'bad'", offset: bad.metadataAt[2] + 8 + 3 + 4,
                                reason: "unknown metadata value type", "type \(type)")
        }
        // Unknown array element types.
        for type: UInt32 in [13, .max] {
            let w = Self.smallWriter(metadata: .raw(type: 9, payload: Self.le(type) + Self.le(UInt64(1)) + [0, 0, 0, 0]))
            try assertMalformed(w.build().bytes, field: "'bad'", reason: "unknown array element type", "type \(type)")
        }
        // An unknown element type inside a nested array.
        let nestedBad = Self.smallWriter(metadata: .raw(
            type: 9, payload: Self.le(UInt32(9)) + Self.le(UInt64(1)) + Self.le(UInt32(42)) + Self.le(UInt64(0))))
        try assertMalformed(nestedBad.build().bytes, field: "'bad'", reason: "unknown array element type")

        // Nesting: the limit itself reads back, one deeper is rejected, and very deep does not
        // recurse without bound.
        let limit = GGUFParser.maxArrayDepth
        let atLimit = Self.smallWriter(metadata: Self.nested(depth: limit))
        let g = try GGUFFile(path: try write(atLimit.build().bytes))
        XCTAssertEqual(g.value("bad"), Self.expected(Self.nested(depth: limit)))
        try assertMalformed(Self.smallWriter(metadata: Self.nested(depth: limit + 1)).build().bytes,
                            field: "'bad'", reason: "nested")
        var deep: [UInt8] = []
        for _ in 0..<99_999 { deep += Self.le(UInt32(9)) + Self.le(UInt64(1)) }
        deep += Self.le(UInt32(0)) + Self.le(UInt64(1)) + [5]
        try assertMalformed(Self.smallWriter(metadata: .raw(type: 9, payload: deep)).build().bytes,
                            field: "'bad'", reason: "nested")

        // Bools must be 0 or 1, alone and in arrays.
        for b: UInt8 in [2, 0xFF] {
            let (bytes, bad) = Self.smallWriter(metadata: .raw(type: 7, payload: [b])).build()
            try assertMalformed(bytes, field: "'bad'", offset: bad.metadataAt[2] + 8 + 3 + 4, reason: "bool", "byte \(b)")
        }
        let boolArray = Self.smallWriter(metadata: .raw(type: 9, payload: Self.le(UInt32(7)) + Self.le(UInt64(3)) + [1, 0, 2]))
        try assertMalformed(boolArray.build().bytes, field: "'bad'[2]", reason: "bool")

        // general.alignment: not a power of two, zero, too large, or not an integer.
        for a: GGUFTestValue in [.uint32(48), .uint32(0), .uint32(3), .uint32(1 << 31), .int32(-32), .string("32"),
                                 .float32(32)] {
            let w = Self.smallWriter(metadata: a, key: "general.alignment")
            try assertMalformed(w.build().bytes, field: "general.alignment", "alignment \(a)")
        }

        // The reported offset is where the bad alignment value is.
        let (badAlign, badAlignLayout) = Self.smallWriter(metadata: .uint32(48), key: "general.alignment").build()
        try assertMalformed(badAlign, field: "general.alignment",
                            offset: badAlignLayout.metadataAt[2] + 8 + "general.alignment".utf8.count + 4)

        XCTAssertLessThan(Self.maxRSSBytes() - rss0, 256 << 20, "corrupt metadata made the reader allocate a lot")
    }

    /// A key given twice would make `value(_:)` (last) and the parser (first) disagree, for example
    /// on `general.alignment`; such files are rejected, as duplicate tensor names are.
    func testDuplicateMetadataKeysAreRejected() throws {
        var w = Self.smallWriter()
        w.metadata.append(("n", .uint32(4)))
        let (bytes, layout) = w.build()
        try assertMalformed(bytes, field: "'n'", offset: layout.metadataAt[2], reason: "duplicate")

        var a = Self.smallWriter()
        a.metadata += [("general.alignment", .uint32(64)), ("general.alignment", .uint32(32))]
        a.alignment = 64
        try assertMalformed(a.build().bytes, field: "general.alignment", reason: "duplicate")
    }

    func testCorruptTensorInfos() throws {
        let rss0 = Self.maxRSSBytes()

        // n_dims 0 and 5 (and absurd).
        for n: UInt32 in [0, 5, .max] {
            let w = Self.smallWriter { t in
                t.nDimsOverride = n
                t.dims = n == 5 ? [1, 1, 1, 1, 1] : []
            }
            let (bytes, layout) = w.build()
            try assertMalformed(bytes, field: "'a' n_dims", offset: layout.tensorInfoAt[0] + 8 + 1, "n_dims \(n)")
        }
        // A zero dimension, first or later.
        for dims: [UInt64] in [[0], [4, 0], [4, 2, 1, 0]] {
            let w = Self.smallWriter { $0.dims = dims }
            let z = dims.firstIndex(of: 0)!
            let (bytes, layout) = w.build()
            try assertMalformed(bytes, field: "'a' dims[\(z)]", offset: layout.tensorInfoAt[0] + 8 + 1 + 4 + 8 * z,
                                "dims \(dims)")
        }
        // Dimensions out of range or whose product overflows.
        for dims: [UInt64] in [[1 << 40], [.max], [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1],
                               [1 << 31 - 1, 1 << 31 - 1], [1 << 20, 1 << 20, 1 << 20]] {
            let w = Self.smallWriter { $0.dims = dims }
            try assertMalformed(w.build().bytes, field: "'a' dims", "dims \(dims)")
        }
        // A block type whose rows are not whole blocks.
        try assertMalformed(Self.smallWriter { $0.type = 8; $0.dims = [48] }.build().bytes, field: "'a' dims[0]")

        // Unknown or unsupported tensor types.
        for type: UInt32 in [99, 12, 14, 31, .max] {
            let w = Self.smallWriter { $0.type = type }
            switch try open(w.build().bytes) {
            case .success: XCTFail("type \(type) accepted")
            case .failure(let e): XCTAssertEqual(e, .unsupportedTensorType(tensor: "a", type: type))
            }
        }

        // Offsets: unaligned, past the end, overflowing.
        for off: UInt64 in [1, 4, 16, 33] {
            let w = Self.smallWriter { $0.offsetOverride = off }
            let (bytes, layout) = w.build()
            try assertMalformed(bytes, field: "'a' offset", maxOffset: layout.tensorInfoAt[0], reason: "aligned", "offset \(off)")
        }
        var w64 = Self.smallWriter()
        w64.metadata.append(("general.alignment", .uint32(64)))
        w64.alignment = 64
        w64.tensors[1].offsetOverride = 32  // aligned to 32 but not to 64
        try assertMalformed(w64.build().bytes, field: "'b' offset", reason: "aligned")
        for off: UInt64 in [1 << 20, 1 << 62, UInt64.max & ~31, 64] {
            let w = Self.smallWriter { $0.offsetOverride = off }
            try assertMalformed(w.build().bytes, field: "'a' offset", reason: "past the end", "offset \(off)")
        }
        // The last tensor's data one byte short.
        let (valid, _) = Self.smallWriter().build()
        try assertMalformed(Array(valid.dropLast()), field: "'b'", reason: "past the end")

        // Duplicate tensor names.
        var dup = Self.smallWriter()
        dup.tensors[1].name = "a"
        let (dupBytes, dupLayout) = dup.build()
        try assertMalformed(dupBytes, field: "'a'", offset: dupLayout.tensorInfoAt[1], reason: "duplicate")

        XCTAssertLessThan(Self.maxRSSBytes() - rss0, 256 << 20, "corrupt tensor infos made the reader allocate a lot")
    }

    func testNonexistentPathIsIO() throws {
        let path = dir.appendingPathComponent("does-not-exist.gguf").path
        do {
            _ = try GGUFFile(path: path)
            XCTFail("opened a nonexistent file")
        } catch {
            guard case let .io(p, reason) = error else { return XCTFail("expected .io, got \(error)") }
            XCTAssertEqual(p, path)
            XCTAssertFalse(reason.isEmpty)
        }
    }

    // MARK: - 3b. tokenizer metadata (special-token ids, key types)

    /// A writer with a complete gpt2 tokenizer: 2 specials, the 256 byte tokens and one merge
    /// ("h e" -> "he"), plus `extra` entries (a key given in `extra` replaces the default one).
    private static func tokenizerWriter(_ extra: [(String, GGUFTestValue)] = [],
                                        removing removed: Set<String> = []) -> GGUFTestWriter {
        let tokens = ["<|endoftext|>", "<|im_start|>"] + ByteLevel.scalar.map { String($0) } + ["he"]
        var entries: [(key: String, value: GGUFTestValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string("smollm")),
            ("tokenizer.ggml.tokens", .array(elementType: 8, tokens.map { .string($0) })),
            ("tokenizer.ggml.token_type", .array(elementType: 5, tokens.indices.map { .int32($0 < 2 ? 3 : 1) })),
            ("tokenizer.ggml.merges", .array(elementType: 8, [.string("h e")])),
            ("tokenizer.ggml.bos_token_id", .uint32(1)),
            ("tokenizer.ggml.eos_token_id", .uint32(0)),
            ("tokenizer.ggml.add_bos_token", .bool(false)),
        ]
        for (key, value) in extra {
            if let i = entries.firstIndex(where: { $0.key == key }) { entries[i].value = value } else { entries.append((key, value)) }
        }
        var w = GGUFTestWriter()
        w.metadata = entries.filter { !removed.contains($0.key) }
        return w
    }

    private static let tokenizerVocabularySize = 2 + 256 + 1

    /// Builds the tokenizer of `w`'s file, returning the error when there is one, and the path and
    /// the byte offset of `key`'s value (after its type tag).
    private func tokenizer(_ w: GGUFTestWriter, valueOf key: String? = nil) throws
        -> (result: Result<Tokenizer, KVError>, path: String, valueAt: Int) {
        let (bytes, layout) = w.build()
        let path = try write(bytes)
        var valueAt = -1
        if let key, let i = w.metadata.firstIndex(where: { $0.key == key }) {
            valueAt = layout.metadataAt[i] + 8 + key.utf8.count + 4
        }
        let file = try GGUFFile(path: path)
        do {
            return (.success(try Tokenizer(gguf: file)), path, valueAt)
        } catch {
            return (.failure(error), path, valueAt)
        }
    }

    func testTokenizerSpecialTokenIDsInRangeAreRead() throws {
        let (result, _, _) = try tokenizer(Self.tokenizerWriter([("tokenizer.ggml.eos_token_id", .int64(258))]))
        let t = try result.get()
        XCTAssertEqual(t.vocabularySize, Self.tokenizerVocabularySize)
        XCTAssertEqual(t.bosTokenID, 1)
        XCTAssertEqual(t.eosTokenID, 258)
        XCTAssertEqual(try t.encode("he"), [258])
        // Absent keys take llama.cpp's defaults (BOS 1, EOS 2), which lie inside this vocabulary.
        let (defaults, _, _) = try tokenizer(Self.tokenizerWriter(
            removing: ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token",
                       "tokenizer.ggml.token_type", "tokenizer.ggml.pre"]))
        let d = try defaults.get()
        XCTAssertEqual([d.bosTokenID, d.eosTokenID], [1, 2])
        XCTAssertFalse(d.addsBOS)
    }

    /// Issue 18: an end-of-sequence id of 10^9 was accepted (and `Int32(...)` of a larger one trapped).
    func testTokenizerRejectsOutOfVocabularyEOS() throws {
        let key = "tokenizer.ggml.eos_token_id"
        let (result, path, valueAt) = try tokenizer(Self.tokenizerWriter([(key, .uint32(1_000_000_000))]), valueOf: key)
        XCTAssertEqual(result.failure, .malformedFile(
            path: path, field: key, offset: valueAt,
            reason: "token id 1000000000 is outside the vocabulary of 259 tokens (ids 0..<259); "
                + "set it to the id of the model's end-of-sequence token or re-convert the model"))
        XCTAssertEqual(result.failure?.description,
                       "malformed file \(path): field 'tokenizer.ggml.eos_token_id' at byte offset \(valueAt): token id "
                           + "1000000000 is outside the vocabulary of 259 tokens (ids 0..<259); set it to the id of "
                           + "the model's end-of-sequence token or re-convert the model")
    }

    func testTokenizerRejectsOutOfVocabularySpecialIDs() throws {
        let cases: [(key: String, value: GGUFTestValue, shown: String)] = [
            ("tokenizer.ggml.eos_token_id", .uint32(259), "259"),  // one past the last id
            ("tokenizer.ggml.eos_token_id", .int32(-1), "-1"),
            ("tokenizer.ggml.eos_token_id", .int64(1 << 40), "\(1 << 40)"),  // would trap in Int32(...)
            ("tokenizer.ggml.eos_token_id", .uint64(.max), "18446744073709551615"),  // not even an Int
            ("tokenizer.ggml.bos_token_id", .uint32(1_000_000_000), "1000000000"),
            ("tokenizer.ggml.bos_token_id", .int8(-128), "-128"),
        ]
        for c in cases {
            let (result, path, valueAt) = try tokenizer(Self.tokenizerWriter([(c.key, c.value)]), valueOf: c.key)
            let role = c.key.contains("eos") ? "end-of-sequence" : "beginning-of-sequence"
            XCTAssertEqual(result.failure, .malformedFile(
                path: path, field: c.key, offset: valueAt,
                reason: "token id \(c.shown) is outside the vocabulary of 259 tokens (ids 0..<259); "
                    + "set it to the id of the model's \(role) token or re-convert the model"), "\(c.key) = \(c.value)")
        }
        // An absent key whose default does not fit a tiny vocabulary is reported, not defaulted.
        var tiny = Self.tokenizerWriter(removing: ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.merges"])
        tiny.metadata[2].value = .array(elementType: 8, [.string("a"), .string("b")])
        tiny.metadata[3].value = .array(elementType: 5, [.int32(1), .int32(1)])
        tiny.metadata.append(("tokenizer.ggml.merges", .array(elementType: 8, [])))
        tiny.metadata[4].value = .uint32(0)  // bos
        let (result, path, _) = try tokenizer(tiny)
        XCTAssertEqual(result.failure, .unsupportedModel(
            "\(path): metadata key 'tokenizer.ggml.eos_token_id' is absent and its default id 2 lies outside "
                + "the vocabulary of 2 tokens; add the key with the id of the model's end-of-sequence token"))
    }

    /// A key that is present with the wrong type is an error, never silently defaulted.
    func testTokenizerRejectsWrongTypedKeys() throws {
        let cases: [(key: String, value: GGUFTestValue, type: String, expected: String)] = [
            ("tokenizer.ggml.eos_token_id", .string("2"), "string", "an integer token id"),
            ("tokenizer.ggml.eos_token_id", .float32(2), "float32", "an integer token id"),
            ("tokenizer.ggml.bos_token_id", .bool(true), "bool", "an integer token id"),
            ("tokenizer.ggml.bos_token_id", .array(elementType: 4, [.uint32(1)]), "array of uint32", "an integer token id"),
            ("tokenizer.ggml.add_bos_token", .uint8(1), "uint8", "a bool"),
            ("tokenizer.ggml.pre", .uint32(1), "uint32", "a string"),
            ("tokenizer.ggml.tokens", .array(elementType: 4, [.uint32(1), .uint32(2)]), "array of uint32",
             "an array of strings"),
            ("tokenizer.ggml.merges", .array(elementType: 5, [.int32(1)]), "array of int32", "an array of strings"),
            ("tokenizer.ggml.token_type", .array(elementType: 8, [.string("3")]), "array of string",
             "an array of integers"),
        ]
        for c in cases {
            let (result, path, valueAt) = try tokenizer(Self.tokenizerWriter([(c.key, c.value)]), valueOf: c.key)
            XCTAssertEqual(result.failure, .malformedFile(
                path: path, field: c.key, offset: valueAt,
                reason: "the value has type \(c.type), expected \(c.expected); fix the key's type or re-convert the model"),
                           "\(c.key) = \(c.value)")
        }
        // A required key of the wrong type (not an array) keeps the accessor's message.
        let (notArray, path, _) = try tokenizer(Self.tokenizerWriter([("tokenizer.ggml.tokens", .string("a"))]))
        XCTAssertEqual(notArray.failure,
                       .unsupportedModel("\(path): metadata key 'tokenizer.ggml.tokens' is missing or not an array"))
    }

    func testTokenizerFromPartsRejectsOutOfVocabularyIDs() {
        let tokens = ByteLevel.scalar.map { String($0) }
        for (bos, eos) in [(Int32(0), Int32(256)), (-1, 0)] {
            XCTAssertThrowsError(try Tokenizer(tokens: tokens, tokenTypes: nil, merges: [], bos: bos, eos: eos,
                                               addBOS: false, splitDigits: false)) { error in
                let name = bos < 0 ? "bos" : "eos"
                XCTAssertEqual(error as? KVError, .invalidParameter(
                    name: name, value: "\(bos < 0 ? bos : eos)", expected: "a token id in 0..<256 (the vocabulary size)"))
            }
        }
    }

    /// A complete one-layer llama (hidden 32, 2 heads, 1 KV head, FFN 64, f32 weights) with the test
    /// tokenizer and its own `output.weight`; `embeddingColumns` is token_embd's row width.
    private static func tinyLlamaWriter(embeddingColumns: UInt64 = 32) -> GGUFTestWriter {
        var w = tokenizerWriter()
        let vocab = UInt64(tokenizerVocabularySize)
        w.metadata = [("general.architecture", .string("llama")), ("llama.block_count", .uint32(1)),
                      ("llama.embedding_length", .uint32(32)), ("llama.feed_forward_length", .uint32(64)),
                      ("llama.attention.head_count", .uint32(2)), ("llama.attention.head_count_kv", .uint32(1)),
                      ("llama.context_length", .uint32(128))] + w.metadata
        var rng = RNG(state: 32)
        func tensor(_ name: String, _ dims: [UInt64]) -> GGUFTestTensor {
            let count = Int(dims.reduce(1, *))
            return GGUFTestTensor(name: name, dims: dims, type: 0, data: tensorBytes(type: 0, count: count, rng: &rng))
        }
        w.tensors = [
            tensor("blk.0.attn_norm.weight", [32]), tensor("blk.0.ffn_norm.weight", [32]),
            tensor("blk.0.attn_q.weight", [32, 32]), tensor("blk.0.attn_k.weight", [32, 16]),
            tensor("blk.0.attn_v.weight", [32, 16]), tensor("blk.0.attn_output.weight", [32, 32]),
            tensor("blk.0.ffn_gate.weight", [32, 64]), tensor("blk.0.ffn_up.weight", [32, 64]),
            tensor("blk.0.ffn_down.weight", [64, 32]), tensor("output_norm.weight", [32]),
            tensor("output.weight", [32, vocab]),
            tensor("token_embd.weight", [embeddingColumns, vocab]),  // last: nothing after it in the file
        ]
        return w
    }

    /// Found by the GGUF fuzz target: with an own `output.weight`, a `token_embd.weight` narrower than
    /// `llama.embedding_length` was accepted and every embedding lookup read past the tensor (past the
    /// end of the file for the last token); now it is a shape mismatch at load.
    func testModelRejectsNarrowEmbedding() throws {
        let good = try GGUFFile(path: try write(Self.tinyLlamaWriter().build().bytes))
        let model = try LlamaModel(gguf: good)
        XCTAssertEqual(model.config.vocab, Self.tokenizerVocabularySize)
        XCTAssertEqual(model.config.hidden, 32)

        for columns: UInt64 in [16, 64] {
            let bad = try GGUFFile(path: try write(Self.tinyLlamaWriter(embeddingColumns: columns).build().bytes))
            XCTAssertThrowsError(try LlamaModel(gguf: bad)) { error in
                XCTAssertEqual(error as? KVError, .shapeMismatch(
                    "tensor 'token_embd.weight' has dims [\(columns), 259], expected [32, 259] "
                        + "(llama.embedding_length, vocabulary)"))
            }
        }
    }

    /// The in-memory entry point (used by the fuzz target) parses exactly as the file-based one.
    func testInMemoryParsingMatchesFile() throws {
        let (bytes, _) = Self.validWriter(alignment: 64).build()
        let fromFile = try GGUFFile(path: try write(bytes))
        let inMemory = try bytes.withUnsafeBytes { raw throws(KVError) in try GGUFFile(copying: raw, path: "memory") }
        XCTAssertEqual(inMemory.metadata.map(\.key), fromFile.metadata.map(\.key))
        XCTAssertEqual(inMemory.tensors.map(\.name), fromFile.tensors.map(\.name))
        XCTAssertEqual(inMemory.dataOffset, fromFile.dataOffset)
        for t in fromFile.tensors {
            XCTAssertEqual(Array(try inMemory.data(t.name)), Array(try fromFile.data(t.name)), t.name)
        }
        for (key, _) in fromFile.metadata { XCTAssertEqual(inMemory.valueOffset(key), fromFile.valueOffset(key), key) }
        let truncated = Array(bytes.prefix(100))
        XCTAssertThrowsError(try truncated.withUnsafeBytes { raw throws(KVError) in
            try GGUFFile(copying: raw, path: "memory")
        })
        XCTAssertThrowsError(try [UInt8]().withUnsafeBytes { raw throws(KVError) in
            try GGUFFile(copying: raw, path: "memory")
        })
    }

    // MARK: - 4. the real default model

    func testDefaultModelFile() throws {
        let url: URL
        do {
            url = try ModelStore.defaultModelURL()
        } catch {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                XCTFail("CI=true and the default model is unavailable: \(error)")
                return
            }
            throw XCTSkip("default model unavailable (\(error))")
        }
        let g = try GGUFFile(path: url.path)
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.tensors.count, 272)
        XCTAssertEqual(try g.string("general.architecture"), "llama")
        XCTAssertEqual(try g.int("llama.block_count"), 30)
        XCTAssertEqual(try g.int("llama.attention.head_count"), 9)
        XCTAssertEqual(try g.int("llama.attention.head_count_kv"), 3)
        XCTAssertEqual(try g.int("llama.embedding_length"), 576)
        XCTAssertEqual(try g.int("llama.feed_forward_length"), 1536)
        let tokens = try g.array("tokenizer.ggml.tokens")
        XCTAssertEqual(tokens.count, 49152)
        XCTAssertTrue(tokens.allSatisfy { $0.stringValue != nil })

        let embd = try g.info("token_embd.weight")
        XCTAssertEqual(embd.type, .q8_0)
        XCTAssertEqual(embd.dimensions, [576, 49152])
        let q = try g.info("blk.0.attn_q.weight")
        XCTAssertEqual(q.type, .q4_1)
        XCTAssertEqual(q.dimensions, [576, 576])
        XCTAssertEqual(try g.info("blk.0.attn_k.weight").dimensions, [576, 192])
        XCTAssertEqual(try g.info("blk.29.ffn_down.weight").dimensions, [1536, 576])
        XCTAssertEqual(try g.info("output_norm.weight").type, .f32)

        // Every tensor: aligned, inside the file, byte count from its own shape.
        let layout: [ElementType: (block: Int, bytes: Int)] = [.f32: (1, 4), .f16: (1, 2), .bf16: (1, 2),
                                                               .q8_0: (32, 34), .q4_0: (32, 18), .q4_1: (32, 20)]
        var end = g.dataOffset
        for t in g.tensors {
            let l = try XCTUnwrap(layout[t.type])
            let n = t.dimensions.reduce(1, *)
            XCTAssertEqual(t.byteCount, n / l.block * l.bytes, t.name)
            XCTAssertEqual(t.fileOffset % g.alignment, 0, t.name)
            XCTAssertGreaterThanOrEqual(t.fileOffset, g.dataOffset, t.name)
            XCTAssertLessThanOrEqual(t.fileOffset + t.byteCount, g.fileSize, t.name)
            if t.name.hasSuffix("_norm.weight") {
                XCTAssertEqual(t.type, .f32, t.name)
            } else if t.name != "token_embd.weight" {
                XCTAssertEqual(t.type, .q4_1, t.name)
            }
            end = max(end, t.fileOffset + t.byteCount)
        }
        XCTAssertLessThanOrEqual(g.fileSize - end, g.alignment, "unexplained bytes after the last tensor")

        // Dequantization of real blocks equals the scalar reference.
        for name in ["blk.0.attn_q.weight", "blk.0.attn_norm.weight", "blk.17.ffn_gate.weight"] {
            let info = try g.info(name)
            let raw = Array(try g.data(name))
            assertMatches(try g.dequantized(name),
                          Self.reference(type: info.type.rawValue, bytes: raw, count: info.elementCount),
                          type: info.type.rawValue, name)
        }
        // The first and last rows of the embedding.
        let rows = try g.dequantized("token_embd.weight")
        let raw = try g.data("token_embd.weight")
        let rowBytes = 576 / 32 * 34
        for row in [0, 1, 49151] {
            let bytes = Array(raw[(row * rowBytes)..<((row + 1) * rowBytes)])
            assertMatches(Array(rows[(row * 576)..<((row + 1) * 576)]),
                          Self.reference(type: 8, bytes: bytes, count: 576), type: 8, "token_embd row \(row)")
        }
    }
}

extension Result {
    /// The error, or nil on success.
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
