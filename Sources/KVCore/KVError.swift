/// The one error domain of KVCompress: every recoverable failure (bad parameters, bad files, shapes
/// that do not match, cancelled work) is reported as a `KVError` through typed throws.
///
/// Each case's ``description`` says what was wrong and what to do about it.
public enum KVError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A parameter is out of its documented range (a ratio, budget, window, kernel size, bit width...).
    case invalidParameter(name: String, value: String, expected: String)
    /// Tensor, cache or prompt shapes do not fit together.
    case shapeMismatch(String)
    /// A file is truncated or malformed: which field, at which byte offset, and why.
    case malformedFile(path: String, field: String, offset: Int, reason: String)
    /// A tensor uses an element type this library cannot read.
    case unsupportedTensorType(tensor: String, type: UInt32)
    /// A file could not be opened, read, written or mapped.
    case io(path: String, reason: String)
    /// The default model could not be fetched or verified; the message says what to run instead.
    case modelUnavailable(String)
    /// A model lacks something this runtime needs (a tensor, a metadata key, an architecture).
    case unsupportedModel(String)
    /// Text or token ids could not be encoded or decoded.
    case tokenization(String)
    /// The prompt holds no tokens.
    case emptyPrompt
    /// The work was cancelled (Swift task cancellation) before it finished.
    case cancelled
    /// A sequence would exceed a capacity (context length, cache capacity).
    case capacityExceeded(String)
    /// An object was used out of order (a step used after the next one began, layers skipped or
    /// repeated, a sequence left incomplete by an earlier error); the message says how to recover.
    case invalidState(String)
    /// A compute backend cannot run here or failed (no CUDA driver, no GPU, a device error); the
    /// message says why and what to use instead.
    case backend(String)

    /// A human-readable message that says what was wrong and what to do.
    public var description: String {
        switch self {
        case let .invalidParameter(name, value, expected):
            return "invalid \(name) = \(value): expected \(expected)"
        case let .shapeMismatch(message):
            return "shape mismatch: \(message)"
        case let .malformedFile(path, field, offset, reason):
            return "malformed file \(path): field '\(field)' at byte offset \(offset): \(reason)"
        case let .unsupportedTensorType(tensor, type):
            return "tensor '\(tensor)' has element type \(type), which is not supported "
                + "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K); re-export the model with a supported type"
        case let .io(path, reason):
            return "I/O error on \(path): \(reason)"
        case let .modelUnavailable(message):
            return "model unavailable: \(message)"
        case let .unsupportedModel(message):
            return "unsupported model: \(message)"
        case let .tokenization(message):
            return "tokenization error: \(message)"
        case .emptyPrompt:
            return "the prompt is empty: give at least one token"
        case .cancelled:
            return "the work was cancelled"
        case let .capacityExceeded(message):
            return "capacity exceeded: \(message)"
        case let .invalidState(message):
            return "invalid state: \(message)"
        case let .backend(message):
            return "backend error: \(message)"
        }
    }
}
