import CKVKernels

/// Element types of tensors, KV-cache entries and model weights.
///
/// Block types (`q8_0`, `q4_0`, `q4_1`, and this library's `q2_1`) store 32 elements per block in the GGUF byte layout, so a
/// row of `n` elements needs `n` to be a multiple of ``blockSize``.
public enum ElementType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// IEEE 754 single precision.
    case f32 = 0
    /// IEEE 754 half precision.
    case f16 = 1
    /// GGUF Q4_0: 32 elements per 18-byte block, `x = d * (q - 8)`.
    case q4_0 = 2
    /// GGUF Q4_1: 32 elements per 20-byte block, `x = d * q + m`.
    case q4_1 = 3
    /// GGUF Q8_0: 32 elements per 34-byte block, `x = d * q`.
    case q8_0 = 8
    /// bfloat16 (the top half of an f32).
    case bf16 = 30
    /// This library's 2-bit block, not a GGML type (KIVI-2's values): 32 elements per 12-byte
    /// block, f16 scale `d` and min `m`, `x = d * q + m` with `q` in 0...3. A cache type only:
    /// attention reads it, model weights cannot use it.
    case q2_1 = 1002

    /// Elements per block (1 for scalar types).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q8_0, .q2_1: return Int(KVK_BLOCK)
        }
    }

    /// Bytes per block (bytes per element for scalar types).
    public var bytesPerBlock: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18
        case .q4_1: return 20
        case .q8_0: return 34
        case .q2_1: return 12
        }
    }

    /// Whether this is a 32-element block format.
    public var isBlockQuantized: Bool { blockSize > 1 }

    /// Bytes used by `count` elements.
    /// - Precondition: `count` is a multiple of ``blockSize``.
    public func byteCount(elements count: Int) -> Int {
        precondition(count >= 0 && count % blockSize == 0,
                     "\(self) rows need a multiple of \(blockSize) elements, got \(count)")
        return count / blockSize * bytesPerBlock
    }

    /// The C kernels' type id.
    package var kernelType: kvk_type { kvk_type(rawValue: rawValue) }

    /// The GGUF / GGML name (`"F32"`, `"Q8_0"`, ...).
    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q8_0: return "Q8_0"
        case .q2_1: return "Q2_1"
        }
    }
}
