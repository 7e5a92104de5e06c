/// How the host computes a forward pass.
public enum ComputeMode: String, Sendable, CaseIterable {
    /// Weights dequantized to f32 once at load, f32 activations and an f32 cache: reproduces the
    /// float32 reference (transformers on the dequantized GGUF) closely. Uses ~4 bytes per parameter.
    case exact
    /// Computes on the quantized weights in place (memory-mapped, no second copy) with int8
    /// activations, as llama.cpp does; f16 cache by default. Where the CPU's kernels are faster on
    /// four-row groups (Q4_1 and Q8_0 on AVX2), those weights are re-laid once at load and their mapped pages
    /// released, so the resident set stays the same size.
    case fast
}
