/*
 * AArch64 NEON kernels. NOT RUN on the development machine (x86_64): kept simple; every function
 * without a NEON body falls back to the scalar implementation.
 */
#include "kvk_internal.h"

#if defined(__aarch64__)

const kvk_ops kvk_ops_neon = {
    .isa = KVK_ISA_NEON,
    .dot_f32 = kvk_scalar_dot_f32,
    .axpy_f32 = kvk_scalar_axpy_f32,
    .scale_f32 = kvk_scalar_scale_f32,
    .sum_f32 = kvk_scalar_sum_f32,
    .f16_to_f32 = kvk_scalar_f16_to_f32,
    .f32_to_f16 = kvk_scalar_f32_to_f16,
    .bf16_to_f32 = kvk_scalar_bf16_to_f32,
    .f32_to_bf16 = kvk_scalar_f32_to_bf16,
    .quantize = kvk_scalar_quantize,
    .dequantize = kvk_scalar_dequantize,
    .scores = kvk_scalar_scores,
    .weighted_sum = kvk_scalar_weighted_sum,
    .matvec = kvk_scalar_matvec,
    .matmul = kvk_scalar_matmul,
    .quantize_act = kvk_scalar_quantize_act,
    .matvec_q8act = kvk_scalar_matvec_q8act,
    .matmul_q8act = kvk_scalar_matmul_q8act,
    .rmsnorm = kvk_scalar_rmsnorm,
    .silu_mul = kvk_scalar_silu_mul,
    .softmax = kvk_scalar_softmax,
    .rope = kvk_scalar_rope,
};

#endif
