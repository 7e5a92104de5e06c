/*
 * AArch64 NEON kernels.
 *
 * NOT RUN on the development machine (x86_64 only): these bodies were only compile-checked
 * (clang --target=aarch64-linux-gnu -fsyntax-only) and reviewed by reading. They are kept simple
 * (plain loads, FMA, widening integer multiplies; baseline ARMv8.0 only, no dotprod / fp16
 * arithmetic extensions). Everything without a NEON body here uses the scalar implementation.
 * The test suite runs every kernel on both paths, so running it on an arm64 machine checks them.
 */
#include "kvk_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

static float neon_dot_f32(const float *a, const float *b, size_t n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void neon_axpy_f32(float alpha, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), alpha));
    for (; i < n; i++) y[i] += alpha * x[i];
}

static void neon_scale_f32(float alpha, float *x, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), alpha));
    for (; i < n; i++) x[i] *= alpha;
}

static float neon_sum_f32(const float *x, size_t n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(x + i));
        s1 = vaddq_f32(s1, vld1q_f32(x + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(x + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vaddq_f32(s0, vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s += x[i];
    return s;
}

static inline float32x4_t load_f16x4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static void neon_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load_f16x4(src + i));
    for (; i < n; i++) dst[i] = kvk_h2f(src[i]);
}

static void neon_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0; /* FCVTN rounds to nearest even under the default FPCR; NaN stays NaN */
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    for (; i < n; i++) dst[i] = kvk_f2h(src[i]);
}

/* dot of one f32 or f16 row with x */
static float row_dot_f(kvk_type t, const void *row, const float *x, size_t d) {
    if (t == KVK_F32) return neon_dot_f32((const float *)row, x, d);
    const uint16_t *r = (const uint16_t *)row;
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        s0 = vfmaq_f32(s0, load_f16x4(r + i), vld1q_f32(x + i));
        s1 = vfmaq_f32(s1, load_f16x4(r + i + 4), vld1q_f32(x + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < d; i++) s += kvk_h2f(r[i]) * x[i];
    return s;
}

static void neon_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                        float scale, float *out) {
    if (t != KVK_F32 && t != KVK_F16) { kvk_scalar_scores(t, q, keys, key_stride, n, d, scale, out); return; }
    for (size_t j = 0; j < n; j++) out[j] = scale * row_dot_f(t, (const char *)keys + j * key_stride, q, d);
}

static void neon_weighted_sum(kvk_type t, const float *w, const void *values, size_t value_stride, size_t n,
                              size_t d, float *out) {
    if (t == KVK_F32) {
        for (size_t j = 0; j < n; j++) neon_axpy_f32(w[j], (const float *)((const char *)values + j * value_stride), out, d);
    } else if (t == KVK_F16) {
        for (size_t j = 0; j < n; j++) {
            const uint16_t *r = (const uint16_t *)((const char *)values + j * value_stride);
            size_t i = 0;
            for (; i + 4 <= d; i += 4) vst1q_f32(out + i, vfmaq_n_f32(vld1q_f32(out + i), load_f16x4(r + i), w[j]));
            for (; i < d; i++) out[i] += w[j] * kvk_h2f(r[i]);
        }
    } else {
        kvk_scalar_weighted_sum(t, w, values, value_stride, n, d, out);
    }
}

static void neon_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys,
                              size_t key_stride, size_t n, size_t d, float scale, float *out, size_t out_stride) {
    for (size_t h = 0; h < m; h++) neon_scores(t, q + h * q_stride, keys, key_stride, n, d, scale, out + h * out_stride);
}

static void neon_weighted_sum_multi(kvk_type t, const float *w, size_t w_stride, size_t m, const void *values,
                                    size_t value_stride, size_t n, size_t d, float *out, size_t out_stride) {
    for (size_t h = 0; h < m; h++)
        neon_weighted_sum(t, w + h * w_stride, values, value_stride, n, d, out + h * out_stride);
}

static void neon_matvec(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, float *y) {
    if (wt != KVK_F32 && wt != KVK_F16) { kvk_scalar_matvec(wt, w, rows, cols, x, y); return; }
    const size_t rb = kvk_row_bytes(wt, cols);
    for (size_t r = 0; r < rows; r++) y[r] = row_dot_f(wt, (const char *)w + r * rb, x, cols);
}

static void neon_matmul(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, size_t n, float *y,
                        size_t ldy) {
    if (wt != KVK_F32 && wt != KVK_F16) { kvk_scalar_matmul(wt, w, rows, cols, x, n, y, ldy); return; }
    const size_t rb = kvk_row_bytes(wt, cols);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < n; i++) y[i * ldy + r] = row_dot_f(wt, (const char *)w + r * rb, x + i * cols, cols);
}

/* sum of products of 16 signed bytes a and b, widened (exact) */
static inline int32x4_t dot16_s8(int8x16_t a, int8x16_t b, int32x4_t acc) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_s8(vget_high_s8(a), vget_high_s8(b)));
}

static float row_dot_q8act(kvk_type t, const void *row, const kvk_block_q8_act *xq, size_t nb) {
    float s = 0.0f;
    for (size_t k = 0; k < nb; k++) {
        const int8x16_t y0 = vld1q_s8(xq[k].qs), y1 = vld1q_s8(xq[k].qs + 16);
        int32x4_t acc = vdupq_n_s32(0);
        float dw, extra = 0.0f;
        if (t == KVK_Q8_0) {
            const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)row + k;
            acc = dot16_s8(vld1q_s8(b->qs), y0, acc);
            acc = dot16_s8(vld1q_s8(b->qs + 16), y1, acc);
            dw = kvk_h2f(b->d);
        } else if (t == KVK_Q4_0) {
            const kvk_block_q4_0 *b = (const kvk_block_q4_0 *)row + k;
            const uint8x16_t q = vld1q_u8(b->qs);
            const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
            const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
            acc = dot16_s8(lo, y0, acc);
            acc = dot16_s8(hi, y1, acc);
            dw = kvk_h2f(b->d);
        } else {
            const kvk_block_q4_1 *b = (const kvk_block_q4_1 *)row + k;
            const uint8x16_t q = vld1q_u8(b->qs);
            const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f)));
            const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
            acc = dot16_s8(lo, y0, acc);
            acc = dot16_s8(hi, y1, acc);
            dw = kvk_h2f(b->d);
            extra = kvk_h2f(b->m) * xq[k].s;
        }
        s += dw * xq[k].d * (float)vaddvq_s32(acc) + extra;
    }
    return s;
}

static void neon_matmul_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                              size_t n, float *y, size_t ldy) {
    if (wt != KVK_Q8_0 && wt != KVK_Q4_0 && wt != KVK_Q4_1) {
        kvk_scalar_matmul_q8act(wt, w, rows, cols, xq, n, y, ldy);
        return;
    }
    const size_t rb = kvk_row_bytes(wt, cols), nb = cols / KVK_BLOCK;
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < n; i++) y[i * ldy + r] = row_dot_q8act(wt, (const char *)w + r * rb, xq + i * nb, nb);
}

static void neon_matvec_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                              float *y) {
    neon_matmul_q8act(wt, w, rows, cols, xq, 1, y, rows);
}

static void neon_rmsnorm(const float *x, const float *weight, float *y, size_t n, float eps) {
    if (n == 0) return;
    const float ss = neon_dot_f32(x, x, n);
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), inv), vld1q_f32(weight + i)));
    for (; i < n; i++) y[i] = x[i] * inv * weight[i];
}

const kvk_ops kvk_ops_neon = {
    .isa = KVK_ISA_NEON,
    .dot_f32 = neon_dot_f32,
    .axpy_f32 = neon_axpy_f32,
    .scale_f32 = neon_scale_f32,
    .sum_f32 = neon_sum_f32,
    .f16_to_f32 = neon_f16_to_f32,
    .f32_to_f16 = neon_f32_to_f16,
    .bf16_to_f32 = kvk_scalar_bf16_to_f32,
    .f32_to_bf16 = kvk_scalar_f32_to_bf16,
    .quantize = kvk_scalar_quantize,
    .dequantize = kvk_scalar_dequantize,
    .scores = neon_scores,
    .weighted_sum = neon_weighted_sum,
    .scores_multi = neon_scores_multi,
    .weighted_sum_multi = neon_weighted_sum_multi,
    .kivi_scores_multi = kvk_scalar_kivi_scores_multi,
    .matvec = neon_matvec,
    .matmul = neon_matmul,
    .quantize_act = kvk_scalar_quantize_act,
    .matvec_q8act = neon_matvec_q8act,
    .matmul_q8act = neon_matmul_q8act,
    .rmsnorm = neon_rmsnorm,
    .silu_mul = kvk_scalar_silu_mul,
    .softmax_unnormalized = kvk_scalar_softmax_unnormalized,
    .rope = kvk_scalar_rope,
};

#endif
