import CKVKernels
import XCTest
@testable import KVCore

/// Deterministic generator for test data (SplitMix64).
struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SeededRNG {
    mutating func floats(_ n: Int, in range: ClosedRange<Float> = -1...1) -> [Float] {
        (0..<n).map { _ in Float.random(in: range, using: &self) }
    }
}

/// A kernel path under test: one of the instruction sets this CPU supports.
typealias KernelPath = Kernels.ISA

/// Runs `body` once on every kernel path this CPU supports (e.g. AVX-512, AVX2 and scalar),
/// restoring the previous path afterwards.
func forEachKernelPath(_ body: (KernelPath) throws -> Void) rethrows {
    let saved = Kernels.isa
    defer { Kernels.use(saved) }
    for path in Kernels.supportedISAs {
        Kernels.use(path)
        try body(path)
    }
}

/// Unit roundoff of f32 (2^-24).
let f32Unit = Double(Float.ulpOfOne) / 2

/// A rigorous bound on the rounding error of any f32 summation order of n terms whose absolute
/// values sum to `magnitude`: gamma_n = n*u / (1 - n*u) (Higham, recursive summation), plus the
/// product roundings; padded to (n + 2).
func summationBound(_ n: Int, _ magnitude: Double) -> Double {
    let nu = Double(n + 2) * f32Unit
    return nu / (1 - nu) * magnitude + 1e-30
}

// MARK: - independent format decoding (GGUF layout, read byte by byte)

func readU16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
    UInt16(p.load(fromByteOffset: offset, as: UInt8.self)) | UInt16(p.load(fromByteOffset: offset + 1, as: UInt8.self)) << 8
}

func halfToDouble(_ bits: UInt16) -> Double { Double(Float(Float16(bitPattern: bits))) }

/// Decodes n elements of type t starting at p, in double precision.
func referenceDecode(_ t: ElementType, _ p: UnsafeRawPointer, _ n: Int) -> [Double] {
    var out = [Double](repeating: 0, count: n)
    switch t {
    case .f32:
        for i in 0..<n { out[i] = Double(p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)) }
    case .f16:
        for i in 0..<n { out[i] = halfToDouble(readU16(p, 2 * i)) }
    case .bf16:
        for i in 0..<n { out[i] = Double(Float(bitPattern: UInt32(readU16(p, 2 * i)) << 16)) }
    case .q8_0:
        for b in 0..<(n / 32) {
            let base = b * 34
            let d = halfToDouble(readU16(p, base))
            for j in 0..<32 { out[b * 32 + j] = d * Double(p.load(fromByteOffset: base + 2 + j, as: Int8.self)) }
        }
    case .q4_0:
        for b in 0..<(n / 32) {
            let base = b * 18
            let d = halfToDouble(readU16(p, base))
            for j in 0..<16 {
                let byte = p.load(fromByteOffset: base + 2 + j, as: UInt8.self)
                out[b * 32 + j] = d * Double(Int(byte & 15) - 8)
                out[b * 32 + j + 16] = d * Double(Int(byte >> 4) - 8)
            }
        }
    case .q4_1:
        for b in 0..<(n / 32) {
            let base = b * 20
            let d = halfToDouble(readU16(p, base)), m = halfToDouble(readU16(p, base + 2))
            for j in 0..<16 {
                let byte = p.load(fromByteOffset: base + 4 + j, as: UInt8.self)
                out[b * 32 + j] = d * Double(byte & 15) + m
                out[b * 32 + j + 16] = d * Double(byte >> 4) + m
            }
        }
    case .q2_1:
        for b in 0..<(n / 32) {
            let base = b * 12
            let d = halfToDouble(readU16(p, base)), m = halfToDouble(readU16(p, base + 2))
            for j in 0..<32 {
                let byte = p.load(fromByteOffset: base + 4 + j % 8, as: UInt8.self)
                out[b * 32 + j] = d * Double((byte >> (2 * (j / 8))) & 3) + m
            }
        }
    }
    return out
}

/// |block scale x integer code| per element of a block-quantized row (q8_0: the code, q4_0: the code
/// minus 8, q4_1: the code without the block minimum), the part of each element that the SIMD paths'
/// fixed-point roundings multiply; |element| for the other types.
func integerMagnitudes(_ t: ElementType, _ p: UnsafeRawPointer, _ n: Int) -> [Double] {
    let decoded = referenceDecode(t, p, n)
    guard t == .q4_1 || t == .q2_1 else { return decoded.map(abs) }
    let blockBytes = t.bytesPerBlock
    return (0..<n).map { abs(decoded[$0] - halfToDouble(readU16(p, $0 / 32 * blockBytes + 2))) }
}

/// For block-quantized value rows: the bound, per output element, on what the SIMD weighted sums'
/// 16-bit fixed-point rounding of the weights (w_j times each block scale, at most max|w_j d_j,b| / 65534
/// per weight) may add: sum_j |integer element_j,i| * max|w d| / 32767 (a factor 2 above that).
/// Zero for the other types. `rows` are n rows of d elements, `stride` bytes apart.
func weightRoundingBound(_ t: ElementType, _ rows: UnsafeRawPointer, stride: Int, n: Int, d: Int, weights w: [Float]) -> [Double] {
    var bound = [Double](repeating: 0, count: d)
    guard t.isBlockQuantized, n > 0 else { return bound }
    let blockBytes = t.byteCount(elements: 32)
    var wdMax = 0.0
    var ints = [[Double]]()
    for j in 0..<n {
        let row = rows + j * stride
        let parts = integerMagnitudes(t, row, d)
        let scales = (0..<(d / 32)).map { halfToDouble(readU16(row, $0 * blockBytes)) }
        wdMax = max(wdMax, scales.map { abs(Double(w[j]) * $0) }.max() ?? 0)
        ints.append((0..<d).map { scales[$0 / 32] == 0 ? 0 : parts[$0] / abs(scales[$0 / 32]) })
    }
    for j in 0..<n { for i in 0..<d { bound[i] += ints[j][i] * wdMax / 32767 } }
    return bound
}

/// Encodes f32 values as type t with the kernels (tested separately) into a byte array.
func encode(_ t: ElementType, _ values: [Float]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: t.byteCount(elements: values.count))
    values.withUnsafeBufferPointer { src in
        bytes.withUnsafeMutableBytes { dst in
            if !values.isEmpty { kvk_quantize(t.kernelType, src.baseAddress!, dst.baseAddress!, values.count) }
        }
    }
    return bytes
}

/// Asserts |actual - expected| <= tolerance elementwise with a helpful message.
func assertClose(_ actual: [Float], _ expected: [Double], tolerance: [Double], _ what: @autoclosure () -> String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, what(), file: file, line: line)
    for i in 0..<min(actual.count, expected.count) {
        let err = abs(Double(actual[i]) - expected[i])
        if !(err <= tolerance[i]) {
            XCTFail("\(what()): index \(i): got \(actual[i]), expected \(expected[i]), |err| \(err) > \(tolerance[i])",
                    file: file, line: line)
            return
        }
    }
}
