import CKVKernels

/// How rotary position embedding pairs the dimensions of a head vector.
///
/// The pairing a policy uses to reason about RoPE (ExpectedAttention's averaged rotation,
/// StreamingLLM's key re-positioning) must be the pairing the host applied to its queries and keys.
public enum RoPEPairing: Sendable, Equatable, CaseIterable {
    /// "rotate half" (GPT-NeoX, Hugging Face Llama): dimensions `i` and `i + d/2` form a pair.
    case neox
    /// Interleaved (llama.cpp `NORM`, GGUF llama weights): dimensions `2i` and `2i + 1` form a pair.
    case interleaved

    /// The C kernels' pairing id.
    package var kernelValue: kvk_rope_pairing {
        switch self {
        case .neox: return KVK_ROPE_NEOX
        case .interleaved: return KVK_ROPE_NORM
        }
    }

    /// The two dimensions of pair `i` (`0 <= i < headDim / 2`).
    @inlinable
    public func pair(_ i: Int, headDim: Int) -> (Int, Int) {
        switch self {
        case .neox: return (i, i + headDim / 2)
        case .interleaved: return (2 * i, 2 * i + 1)
        }
    }
}
