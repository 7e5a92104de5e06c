/*
 * Internal to CKVKernels: the per-ISA function table and small scalar helpers shared by the
 * implementation files. Not part of the public module (it lives outside include/).
 */
#ifndef KVK_INTERNAL_H
#define KVK_INTERNAL_H

#include "CKVKernels.h"
#include <math.h>
#include <string.h>

/** One implementation of every dispatched kernel. */
typedef struct kvk_ops {
    kvk_isa isa;
    float (*dot_f32)(const float *, const float *, size_t);
    void (*axpy_f32)(float, const float *, float *, size_t);
    void (*scale_f32)(float, float *, size_t);
    float (*sum_f32)(const float *, size_t);
    void (*f16_to_f32)(const uint16_t *, float *, size_t);
    void (*f32_to_f16)(const float *, uint16_t *, size_t);
    void (*bf16_to_f32)(const uint16_t *, float *, size_t);
    void (*f32_to_bf16)(const float *, uint16_t *, size_t);
    void (*quantize)(kvk_type, const float *, void *, size_t);
    void (*dequantize)(kvk_type, const void *, float *, size_t);
    void (*scores)(kvk_type, const float *, const void *, size_t, size_t, size_t, float, float *);
    void (*weighted_sum)(kvk_type, const float *, const void *, size_t, size_t, size_t, float *);
    void (*scores_multi)(kvk_type, const float *, size_t, size_t, const void *, size_t, size_t, size_t, float, float *,
                         size_t);
    void (*weighted_sum_multi)(kvk_type, const float *, size_t, size_t, const void *, size_t, size_t, size_t, float *,
                               size_t);
    /* The two parts of kvk_scores_weighted_sum_multi in one loop; returns 0 (having done nothing) for shapes it
     * does not cover, and NULL in tables without one: the dispatcher then makes the two separate calls. */
    int (*scores_weighted_sum_multi)(size_t, size_t, kvk_type, const float *, size_t, const void *, size_t, size_t, float,
                                     float *, size_t, kvk_type, const float *, size_t, const void *, size_t, size_t,
                                     float *, size_t);
    void (*kivi_scores_multi)(int, const float *, size_t, size_t, const void *, size_t, const uint16_t *, size_t, size_t,
                              float, float *, size_t);
    void (*matvec)(kvk_type, const void *, size_t, size_t, const float *, float *);
    void (*matmul)(kvk_type, const void *, size_t, size_t, const float *, size_t, float *, size_t);
    void (*quantize_act)(const float *, kvk_block_q8_act *, size_t);
    void (*matvec_q8act)(kvk_type, const void *, size_t, size_t, const kvk_block_q8_act *, float *);
    void (*matmul_q8act)(kvk_type, const void *, size_t, size_t, const kvk_block_q8_act *, size_t, float *,
                         size_t);
    /* kvk_matmul_q8act_rows4 where this ISA has a kernel for the packed layout that beats matmul_q8act on GGUF's
     * (kvk_rows4_preferred); NULL elsewhere: the dispatcher then runs the scalar reference. */
    void (*matmul_q8act_rows4)(kvk_type, const void *, size_t, size_t, const kvk_block_q8_act *, size_t, float *,
                               size_t);
    void (*rmsnorm)(const float *, const float *, float *, size_t, float);
    void (*silu_mul)(const float *, const float *, float *, size_t);
    float (*softmax_unnormalized)(float *, size_t, float *);
    void (*rope)(float *, size_t, size_t, size_t, size_t, const int32_t *, const float *, kvk_rope_pairing);
} kvk_ops;

/* Query rows per scores_multi call from which the x86 tables use their many-query (prefill) paths. */
#define KVK_WIDE_MIN_M 8

extern const kvk_ops kvk_ops_scalar;
#if defined(__x86_64__)
extern const kvk_ops kvk_ops_avx2;
/** Replaces the entries of *ops (a copy of kvk_ops_avx2) that have AVX-512 versions, and sets its isa. */
void kvk_avx512_override(kvk_ops *ops);
/** 1 when this CPU has AMX-INT8 and the OS granted this process the tile state (asked once), else 0. */
int kvk_amx_usable(void);
/** Replaces the entries of *ops (a copy of the AVX-512 table) that have AMX versions, and sets its isa;
 *  those fall back to the entries they replace for other shapes. */
void kvk_amx_override(kvk_ops *ops);
#endif
#if defined(__aarch64__)
extern const kvk_ops kvk_ops_neon;
#endif

/* Scalar implementations (also used as fallbacks by the SIMD tables). */
float kvk_scalar_dot_f32(const float *a, const float *b, size_t n);
void kvk_scalar_axpy_f32(float alpha, const float *x, float *y, size_t n);
void kvk_scalar_scale_f32(float alpha, float *x, size_t n);
float kvk_scalar_sum_f32(const float *x, size_t n);
void kvk_scalar_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void kvk_scalar_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void kvk_scalar_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
void kvk_scalar_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
void kvk_scalar_quantize(kvk_type t, const float *src, void *dst, size_t n);
void kvk_scalar_dequantize(kvk_type t, const void *src, float *dst, size_t n);
void kvk_scalar_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                       float scale, float *out);
void kvk_scalar_weighted_sum(kvk_type t, const float *w, const void *values, size_t value_stride, size_t n,
                             size_t d, float *out);
void kvk_scalar_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys,
                             size_t key_stride, size_t n, size_t d, float scale, float *out, size_t out_stride);
void kvk_scalar_weighted_sum_multi(kvk_type t, const float *w, size_t w_stride, size_t m, const void *values,
                                   size_t value_stride, size_t n, size_t d, float *out, size_t out_stride);
void kvk_scalar_kivi_scores_multi(int bits, const float *q, size_t q_stride, size_t m, const void *codes,
                                  size_t code_stride, const uint16_t *params, size_t n, size_t d, float scale,
                                  float *out, size_t out_stride);
void kvk_scalar_matvec(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, float *y);
void kvk_scalar_matmul(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, size_t n,
                       float *y, size_t ldy);
void kvk_scalar_quantize_act(const float *x, kvk_block_q8_act *out, size_t n);
void kvk_scalar_matvec_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                             float *y);
void kvk_scalar_matmul_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                             size_t n, float *y, size_t ldy);
void kvk_scalar_matmul_q8act_rows4(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                                   size_t n, float *y, size_t ldy);
void kvk_scalar_rmsnorm(const float *x, const float *weight, float *y, size_t n, float eps);
void kvk_scalar_silu_mul(const float *gate, const float *up, float *out, size_t n);
float kvk_scalar_softmax_unnormalized(float *x, size_t n, float *shift);
void kvk_scalar_rope(float *x, size_t rows, size_t heads, size_t d, size_t row_stride, const int32_t *positions,
                     const float *inv_freq, kvk_rope_pairing pairing);

/* GGML reference block quantizers (bit-exact rounding), shared by every ISA. */
void kvk_ref_quantize_q8_0(const float *x, kvk_block_q8_0 *y, size_t n);
void kvk_ref_quantize_q4_0(const float *x, kvk_block_q4_0 *y, size_t n);
void kvk_ref_quantize_q4_1(const float *x, kvk_block_q4_1 *y, size_t n);
void kvk_ref_quantize_q2_1(const float *x, kvk_block_q2_1 *y, size_t n);

/* Code c (0 .. 2^bits - 1) of channel i of a KIVI code row / q2_1 / q4_1 block (see CKVKernels.h). */
static inline unsigned kvk_code_at(const uint8_t *codes, int bits, size_t i) {
    const size_t chunk_bytes = 4 * (size_t)bits, base = i / KVK_BLOCK * chunk_bytes, e = i % KVK_BLOCK;
    return (codes[base + e % chunk_bytes] >> (bits * (e / chunk_bytes))) & ((1u << bits) - 1u);
}

/* kvk_row_bytes inline, so that a constant type folds to a constant (hot loops use this one). */
static inline size_t kvk_type_bytes(kvk_type t, size_t n) {
    switch (t) {
    case KVK_F32: return n * 4;
    case KVK_F16:
    case KVK_BF16: return n * 2;
    case KVK_Q8_0: return n / KVK_BLOCK * sizeof(kvk_block_q8_0);
    case KVK_Q4_0: return n / KVK_BLOCK * sizeof(kvk_block_q4_0);
    case KVK_Q4_1: return n / KVK_BLOCK * sizeof(kvk_block_q4_1);
    case KVK_Q2_1: return n / KVK_BLOCK * sizeof(kvk_block_q2_1);
    }
    return 0;
}

/* Rows to prefetch ahead (SIMD attention kernels): about KVK_PREFETCH_BYTES of row data (this
 * machine class's memory latency times one core's bandwidth), between min_rows and 256 rows. */
#define KVK_PREFETCH_BYTES 8192
static inline size_t prefetch_rows(size_t stride, size_t min_rows) {
    size_t pd = stride > 0 ? KVK_PREFETCH_BYTES / stride : min_rows;
    return pd < min_rows ? min_rows : pd > 256 ? 256 : pd;
}

/* ------------------------------------------------------------ scalar bit helpers */

static inline uint32_t kvk_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float kvk_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/** IEEE half -> single, exact (subnormals, inf, NaN payload kept). */
static inline float kvk_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in f32 */
        float v = (float)m * 0x1p-24f;
        return kvk_bits_f32(kvk_f32_bits(v) | sign);
    }
    if (e == 31) return kvk_bits_f32(sign | 0x7f800000u | (m << 13));
    return kvk_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/** IEEE single -> half, round to nearest even; overflow -> inf; NaN -> quiet NaN (payload top bits). */
static inline uint16_t kvk_f2h(float f) {
    uint32_t x = kvk_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
        return (uint16_t)(sign | 0x7c00u);
    }
    if (ax >= 0x47800000u) return (uint16_t)(sign | 0x7c00u); /* >= 65536: inf */
    if (ax < 0x38800000u) {                                    /* below 2^-14: subnormal half */
        if (ax < 0x33000000u) return (uint16_t)sign;           /* <= 2^-25 rounds to zero */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = ax - 0x38000000u; /* rebias 127 -> 15 */
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u))) q++; /* carry may reach inf: correct */
    return (uint16_t)(sign | q);
}

static inline float kvk_bf2f(uint16_t h) { return kvk_bits_f32((uint32_t)h << 16); }

static inline uint16_t kvk_f2bf(float f) {
    uint32_t x = kvk_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/** C's roundf (half away from zero), written so it can be mirrored exactly in SIMD. */
static inline float kvk_roundf(float x) { return roundf(x); }

#if defined(__x86_64__)
#include <immintrin.h>

/* ------------------------------------------------------------ 16-bit queries (AVX-512, AMX) */

/* The query rounding of the integer q8_0 score kernels (kvk_avx512.c, kvk_amx.c), written once so
 * that both give identical scores: q ~= s (256 hi + lo) with s = max|q| / 32639, hi and lo signed
 * bytes (error <= max|q| / 65278 per element). kvk_q16_scale returns s for q[0, d) (d % 16 == 0)
 * and sets *iq to 1 / s (0 for a zero query); kvk_q16_split rounds q[0, 16). */
static inline __attribute__((always_inline, target("avx512f"))) float kvk_q16_scale(const float *q, size_t d, __m512 *iq) {
    __m512 mv = _mm512_setzero_ps();
    for (size_t i = 0; i < d; i += 16) mv = _mm512_max_ps(mv, _mm512_abs_ps(_mm512_loadu_ps(q + i)));
    const float amax = _mm512_reduce_max_ps(mv);
    *iq = _mm512_set1_ps(amax > 0.0f ? 32639.0f / amax : 0.0f);
    return amax / 32639.0f;
}
static inline __attribute__((always_inline, target("avx512f"))) void kvk_q16_split(const float *q, __m512 iq, __m512i *v,
                                                                                     __m512i *hi, __m512i *lo) {
    const __m512i lim = _mm512_set1_epi32(32639);
    const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(q), iq));
    *v = _mm512_max_epi32(_mm512_min_epi32(r, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
    *hi = _mm512_srai_epi32(_mm512_add_epi32(*v, _mm512_set1_epi32(128)), 8); /* floor */
    *lo = _mm512_sub_epi32(*v, _mm512_slli_epi32(*hi, 8));                   /* [-128, 127] */
}
#endif

#endif /* KVK_INTERNAL_H */
