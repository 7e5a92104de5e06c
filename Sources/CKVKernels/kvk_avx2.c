/*
 * x86_64 AVX2 + FMA + F16C kernels, compiled per function with target attributes (no global flags)
 * and selected at run time only when the CPU reports all three features.
 *
 * Structure: the hot kernels (scores / weighted sums over cache rows, matvec, the int8-activation
 * products) work on several rows at once so that independent FMA chains overlap and shared operands
 * (the query, the activation blocks) are loaded once per group.
 */
#include "kvk_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define KVK_I16_MAX_D 1024
#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

/* ------------------------------------------------------------ helpers */

INL float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The four horizontal sums of a0..a3 in one vector. */
INL __m128 hsum8x4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 s01 = _mm256_hadd_ps(a0, a1), s23 = _mm256_hadd_ps(a2, a3);
    const __m256 s = _mm256_hadd_ps(s01, s23);
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

INL float h2f(uint16_t h) { return _cvtsh_ss(h); }

INL __m256 load_f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
INL __m256 load_bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
INL __m256 load_i8x8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
/* Element groups of 8 of a q4 block as floats (q - off). g in 0..3. */
INL __m256 q4_group(const uint8_t *qs, int g, __m256i off) {
    __m128i t = _mm_loadl_epi64((const __m128i *)(qs + (g & 1) * 8));
    if (g >= 2) t = _mm_srli_epi16(t, 4);
    t = _mm_and_si128(t, _mm_set1_epi8(0x0f));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(t), off));
}

/* exp(x) for a vector: Cephes-style range reduction and degree-6 polynomial (about 1-2 ulp);
 * 2^n applied as two factors so results stay correct down to the subnormal range; -inf -> 0,
 * large x -> +inf. */
INL __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-110.0f)), _mm256_set1_ps(89.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    const __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* Prefetches the row data of rows [first, first + count) (row_bytes each, stride apart). */
INL void prefetch_row_range(const char *base, size_t stride, size_t row_bytes, size_t first, size_t count) {
    for (size_t r = first; r < first + count; r++)
        for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(base + r * stride + off, _MM_HINT_T0);
}

/* ------------------------------------------------------------ basic f32 */

static TGT float avx2_dot_f32(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static TGT void avx2_axpy_f32(float alpha, const float *x, float *y, size_t n) {
    const __m256 a = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += alpha * x[i];
}

static TGT void avx2_scale_f32(float alpha, float *x, size_t n) {
    const __m256 a = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(a, _mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] *= alpha;
}

static TGT float avx2_sum_f32(const float *x, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += x[i];
    return s;
}

/* ------------------------------------------------------------ conversion */

static TGT void avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_f16x8(src + i));
    for (; i < n; i++) dst[i] = kvk_h2f(src[i]);
}

static TGT void avx2_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = kvk_f2h(src[i]);
}

static TGT void avx2_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load_bf16x8(src + i));
    for (; i < n; i++) dst[i] = kvk_bf2f(src[i]);
}

static TGT void avx2_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 8 <= n; i += 8) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(src + i));
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
        const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
        const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
        const __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(x, absmask), inf);
        const __m256i r = _mm256_blendv_epi8(rounded, quiet, isnan);
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_castsi256_si128(packed));
    }
    for (; i < n; i++) dst[i] = kvk_f2bf(src[i]);
}

static TGT void avx2_dequantize(kvk_type t, const void *src, float *dst, size_t n) {
    switch (t) {
    case KVK_F16: avx2_f16_to_f32((const uint16_t *)src, dst, n); return;
    case KVK_BF16: avx2_bf16_to_f32((const uint16_t *)src, dst, n); return;
    case KVK_Q8_0: {
        const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)src;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, dst += KVK_BLOCK) {
            const __m256 d = _mm256_set1_ps(h2f(b[k].d));
            for (int g = 0; g < 4; g++) _mm256_storeu_ps(dst + 8 * g, _mm256_mul_ps(d, load_i8x8(b[k].qs + 8 * g)));
        }
        return;
    }
    case KVK_Q4_0: {
        const kvk_block_q4_0 *b = (const kvk_block_q4_0 *)src;
        const __m256i off = _mm256_set1_epi32(8);
        for (size_t k = 0; k < n / KVK_BLOCK; k++, dst += KVK_BLOCK) {
            const __m256 d = _mm256_set1_ps(h2f(b[k].d));
            for (int g = 0; g < 4; g++) _mm256_storeu_ps(dst + 8 * g, _mm256_mul_ps(d, q4_group(b[k].qs, g, off)));
        }
        return;
    }
    case KVK_Q4_1: {
        const kvk_block_q4_1 *b = (const kvk_block_q4_1 *)src;
        const __m256i off = _mm256_setzero_si256();
        for (size_t k = 0; k < n / KVK_BLOCK; k++, dst += KVK_BLOCK) {
            const __m256 d = _mm256_set1_ps(h2f(b[k].d)), m = _mm256_set1_ps(h2f(b[k].m));
            for (int g = 0; g < 4; g++)
                _mm256_storeu_ps(dst + 8 * g, _mm256_fmadd_ps(d, q4_group(b[k].qs, g, off), m));
        }
        return;
    }
    default: kvk_scalar_dequantize(t, src, dst, n); return;
    }
}

static TGT void avx2_quantize_act(const float *x, kvk_block_q8_act *out, size_t n);

static TGT void avx2_quantize(kvk_type t, const float *src, void *dst, size_t n) {
    switch (t) {
    case KVK_F16: avx2_f32_to_f16(src, (uint16_t *)dst, n); return;
    case KVK_BF16: avx2_f32_to_bf16(src, (uint16_t *)dst, n); return;
    case KVK_Q8_0: {
        /* GGML's q8_0 rule is the activation rule (d = max|x| / 127, q = roundf(x * (1/d)), both
         * with the f32 d) with d then stored as f16: reuse the exact vector quantizer per block */
        kvk_block_q8_0 *y = (kvk_block_q8_0 *)dst;
        for (size_t b = 0; b < n / KVK_BLOCK; b++) {
            kvk_block_q8_act a;
            avx2_quantize_act(src + b * KVK_BLOCK, &a, KVK_BLOCK);
            y[b].d = kvk_f2h(a.d);
            memcpy(y[b].qs, a.qs, KVK_BLOCK);
        }
        return;
    }
    default: kvk_scalar_quantize(t, src, dst, n); return; /* exact GGML reference rounding */
    }
}

/* ------------------------------------------------------------ dot of 4 rows with one vector */

/* out[0..3] = dot(row_r, x) for rows r = 0..3 at base + r * stride, d elements of type t. */
INL __m128 dot4_f32(const char *base, size_t stride, const float *x, size_t d) {
    const float *r0 = (const float *)base, *r1 = (const float *)(base + stride),
                *r2 = (const float *)(base + 2 * stride), *r3 = (const float *)(base + 3 * stride);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r0 + i), xv, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r1 + i), xv, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r2 + i), xv, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r3 + i), xv, a3);
    }
    __m128 s = hsum8x4(a0, a1, a2, a3);
    if (i < d) {
        float t[4] = {0, 0, 0, 0};
        for (; i < d; i++) { t[0] += r0[i] * x[i]; t[1] += r1[i] * x[i]; t[2] += r2[i] * x[i]; t[3] += r3[i] * x[i]; }
        s = _mm_add_ps(s, _mm_loadu_ps(t));
    }
    return s;
}

#define DOT4_HALF(NAME, LOAD, CONV)                                                                  \
    INL __m128 NAME(const char *base, size_t stride, const float *x, size_t d) {                    \
        const uint16_t *r0 = (const uint16_t *)base, *r1 = (const uint16_t *)(base + stride),         \
                       *r2 = (const uint16_t *)(base + 2 * stride),                                   \
                       *r3 = (const uint16_t *)(base + 3 * stride);                                   \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                   \
        size_t i = 0;                                                                                 \
        for (; i + 8 <= d; i += 8) {                                                                  \
            const __m256 xv = _mm256_loadu_ps(x + i);                                                 \
            a0 = _mm256_fmadd_ps(LOAD(r0 + i), xv, a0);                                               \
            a1 = _mm256_fmadd_ps(LOAD(r1 + i), xv, a1);                                               \
            a2 = _mm256_fmadd_ps(LOAD(r2 + i), xv, a2);                                               \
            a3 = _mm256_fmadd_ps(LOAD(r3 + i), xv, a3);                                               \
        }                                                                                             \
        __m128 s = hsum8x4(a0, a1, a2, a3);                                                           \
        if (i < d) {                                                                                  \
            float t[4] = {0, 0, 0, 0};                                                                \
            for (; i < d; i++) {                                                                      \
                t[0] += CONV(r0[i]) * x[i]; t[1] += CONV(r1[i]) * x[i];                               \
                t[2] += CONV(r2[i]) * x[i]; t[3] += CONV(r3[i]) * x[i];                               \
            }                                                                                         \
            s = _mm_add_ps(s, _mm_loadu_ps(t));                                                       \
        }                                                                                             \
        return s;                                                                                     \
    }
DOT4_HALF(dot4_f16, load_f16x8, kvk_h2f)
DOT4_HALF(dot4_bf16, load_bf16x8, kvk_bf2f)

INL __m128 dot4_q8_0(const char *base, size_t stride, const float *x, size_t d) {
    const kvk_block_q8_0 *r[4];
    for (int k = 0; k < 4; k++) r[k] = (const kvk_block_q8_0 *)(base + k * stride);
    __m256 acc[4];
    for (int k = 0; k < 4; k++) acc[k] = _mm256_setzero_ps();
    for (size_t b = 0; b < d / KVK_BLOCK; b++) {
        const float *xb = x + b * KVK_BLOCK;
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8), x2 = _mm256_loadu_ps(xb + 16),
                     x3 = _mm256_loadu_ps(xb + 24);
        for (int k = 0; k < 4; k++) {
            const int8_t *q = r[k][b].qs;
            __m256 p = _mm256_mul_ps(load_i8x8(q), x0);
            p = _mm256_fmadd_ps(load_i8x8(q + 8), x1, p);
            p = _mm256_fmadd_ps(load_i8x8(q + 16), x2, p);
            p = _mm256_fmadd_ps(load_i8x8(q + 24), x3, p);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(r[k][b].d)), p, acc[k]);
        }
    }
    return hsum8x4(acc[0], acc[1], acc[2], acc[3]);
}

/* q4_0 (off = 8, no min) and q4_1 (off = 0, min m * sum(x)) share one body. */
INL __m128 dot4_q4(const char *base, size_t stride, const float *x, size_t d, int is_q4_1) {
    const size_t bs = is_q4_1 ? sizeof(kvk_block_q4_1) : sizeof(kvk_block_q4_0);
    const size_t qoff = is_q4_1 ? 4 : 2;
    const __m256i off = _mm256_set1_epi32(is_q4_1 ? 0 : 8);
    __m256 acc[4], macc[4];
    for (int k = 0; k < 4; k++) acc[k] = macc[k] = _mm256_setzero_ps();
    for (size_t b = 0; b < d / KVK_BLOCK; b++) {
        const float *xb = x + b * KVK_BLOCK;
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8), x2 = _mm256_loadu_ps(xb + 16),
                     x3 = _mm256_loadu_ps(xb + 24);
        const __m256 xs = is_q4_1 ? _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)) : x0;
        for (int k = 0; k < 4; k++) {
            const char *blk = base + k * stride + b * bs;
            const uint8_t *qs = (const uint8_t *)(blk + qoff);
            __m256 p = _mm256_mul_ps(q4_group(qs, 0, off), x0);
            p = _mm256_fmadd_ps(q4_group(qs, 1, off), x1, p);
            p = _mm256_fmadd_ps(q4_group(qs, 2, off), x2, p);
            p = _mm256_fmadd_ps(q4_group(qs, 3, off), x3, p);
            uint16_t dh, mh;
            memcpy(&dh, blk, 2);
            acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(dh)), p, acc[k]);
            if (is_q4_1) {
                memcpy(&mh, blk + 2, 2);
                macc[k] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(mh)), xs, macc[k]);
            }
        }
    }
    if (is_q4_1)
        for (int k = 0; k < 4; k++) acc[k] = _mm256_add_ps(acc[k], macc[k]);
    return hsum8x4(acc[0], acc[1], acc[2], acc[3]);
}

/* 32 nibbles as 32 bytes 0..15 (low nibbles, then high nibbles): one broadcast load, a per-lane
 * 64-bit shift (lane 1 by 4) and a mask. */
INL __m256i unpack_nibbles_fast(const uint8_t *qs) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(t, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
}

/* 32 2-bit fields packed like q2_1 codes (element i at bit 2 * (i / 8) of byte i % 8) as 32 bytes 0..3
 * in element order: one 8-byte broadcast, a per-lane 64-bit shift (lane k by 2k) and a mask. */
INL __m256i unpack_2bit_fast(const uint8_t *qs) {
    int64_t c;
    memcpy(&c, qs, 8);
    return _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x(c), _mm256_setr_epi64x(0, 2, 4, 6)),
                            _mm256_set1_epi8(3));
}

/* Size of one block of the i16 kinds: 0 = q8_0, 1 = q4_0, 2 = q4_1, 3 = q2_1. */
INL size_t i16_block_bytes(int kind) {
    return kind == 0 ? sizeof(kvk_block_q8_0) : kind == 1 ? sizeof(kvk_block_q4_0)
         : kind == 2 ? sizeof(kvk_block_q4_1) : sizeof(kvk_block_q2_1);
}

/* One block's 32 codes as two vectors of 16 int16 (q4_0 with its offset 8 taken off; q4_1 and q2_1
 * unsigned), its scale broadcast, and (kinds 2, 3) its min. */
INL void load_block_i16(int kind, const char *blk, __m256i *k0, __m256i *k1, __m256 *dk, float *mk) {
    int32_t head;
    memcpy(&head, blk, 4);
    const __m128 dm = _mm_cvtph_ps(_mm_cvtsi32_si128(head)); /* d, and m for kinds 2 and 3 */
    *dk = _mm256_broadcastss_ps(dm);
    if (kind >= 2) *mk = _mm_cvtss_f32(_mm_movehdup_ps(dm));
    if (kind == 0) {
        *k0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2)));
        *k1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 18)));
        return;
    }
    if (kind <= 2) { /* q4: byte i holds element i (low nibble) and element i + 16 (high nibble) */
        const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + (kind == 1 ? 2 : 4))));
        *k0 = _mm256_and_si256(x, _mm256_set1_epi16(0x0f));
        *k1 = _mm256_srli_epi16(x, 4);
        if (kind == 1) {
            *k0 = _mm256_sub_epi16(*k0, _mm256_set1_epi16(8));
            *k1 = _mm256_sub_epi16(*k1, _mm256_set1_epi16(8));
        }
        return;
    }
    const __m256i q = unpack_2bit_fast((const uint8_t *)blk + 4); /* q2_1 */
    *k0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
    *k1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1));
}

/* The query in 16-bit fixed point (q ~= sq * q16, sq = max|q| / 32767) and, for the kinds with a min,
 * the sum of q over each block (qsum[b], what the block's min multiplies). Returns sq. */
INL float query_i16(const float *x, size_t d, int with_sums, int16_t *q16, float *qsum) {
    float amax = 0.0f;
    size_t i = 0;
    if (d >= 8) { /* vector max over whole vectors, the rest below */
        const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        __m256 mx = _mm256_setzero_ps();
        for (; i + 8 <= d; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
        __m128 t = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        t = _mm_max_ps(t, _mm_movehl_ps(t, t));
        amax = _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)));
    }
    for (; i < d; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    const float iq = amax > 0.0f ? 32767.0f / amax : 0.0f;
    const __m256 viq = _mm256_set1_ps(iq);
    i = 0;
    for (; i + 16 <= d; i += 16) { /* round to nearest even, as lrintf in the default mode */
        const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), viq));
        const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), viq));
        _mm256_storeu_si256((__m256i *)(q16 + i), _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8));
    }
    for (; i < d; i++) q16[i] = (int16_t)lrintf(x[i] * iq);
    if (with_sums)
        for (size_t b = 0; b < d / KVK_BLOCK; b++) {
            float t = 0.0f;
            for (size_t k = 0; k < KVK_BLOCK; k++) t += x[b * KVK_BLOCK + k];
            qsum[b] = t;
        }
    return amax / 32767.0f;
}

/* Block-quantized keys against a query in 16-bit fixed point (q ~= sq * q16): exact integer block
 * dots (int8 x int16 -> int32 via madd), one float scale per block. Returns 4 raw sums (times sq by
 * the caller); for q4_1 / q2_1 also the 4 sums of block min times qsum (in *mins, times 1). */
INL __m128 dot4_i16(int kind, const char *base, size_t stride, const int16_t *q16, const float *qsum, size_t d,
                    __m128 *mins) {
    const size_t bs = i16_block_bytes(kind);
    __m256 acc[4];
    float macc[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4; k++) acc[k] = _mm256_setzero_ps();
    for (size_t b = 0; b < d / KVK_BLOCK; b++) {
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)(q16 + b * KVK_BLOCK));
        const __m256i q1 = _mm256_loadu_si256((const __m256i *)(q16 + b * KVK_BLOCK + 16));
        for (int k = 0; k < 4; k++) {
            __m256i k0, k1;
            __m256 dk;
            float mk = 0.0f;
            load_block_i16(kind, base + k * stride + b * bs, &k0, &k1, &dk, &mk);
            const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(k0, q0), _mm256_madd_epi16(k1, q1));
            acc[k] = _mm256_fmadd_ps(dk, _mm256_cvtepi32_ps(p), acc[k]);
            if (kind >= 2) macc[k] += mk * qsum[b];
        }
    }
    *mins = _mm_loadu_ps(macc);
    return hsum8x4(acc[0], acc[1], acc[2], acc[3]);
}

/* dot4 for any type */
INL __m128 dot4(kvk_type t, const char *base, size_t stride, const float *x, size_t d) {
    switch (t) {
    case KVK_F32: return dot4_f32(base, stride, x, d);
    case KVK_F16: return dot4_f16(base, stride, x, d);
    case KVK_BF16: return dot4_bf16(base, stride, x, d);
    case KVK_Q8_0: return dot4_q8_0(base, stride, x, d);
    case KVK_Q4_0: return dot4_q4(base, stride, x, d, 0);
    case KVK_Q4_1: return dot4_q4(base, stride, x, d, 1);
    case KVK_Q2_1: break; /* not reached: the entry points route q2_1 elsewhere */
    }
    return _mm_setzero_ps();
}

/* Applies f(type) over rows in groups of 4 with a switch hoisted out of the row loop. */
#define ROWS4_LOOP(T, BODY)                                                                          \
    switch (T) {                                                                                      \
    case KVK_F32: { BODY(dot4_f32(base, stride, x, d)) break; }                                       \
    case KVK_F16: { BODY(dot4_f16(base, stride, x, d)) break; }                                       \
    case KVK_BF16: { BODY(dot4_bf16(base, stride, x, d)) break; }                                     \
    case KVK_Q8_0: { BODY(dot4_q8_0(base, stride, x, d)) break; }                                     \
    case KVK_Q4_0: { BODY(dot4_q4(base, stride, x, d, 0)) break; }                                    \
    case KVK_Q4_1: { BODY(dot4_q4(base, stride, x, d, 1)) break; }                                    \
    case KVK_Q2_1: break; /* not reached: the entry points route q2_1 elsewhere */                  \
    }

/* The i16 kind of a block type (see i16_block_bytes), -1 for the float row types. */
INL int i16_kind(kvk_type t) {
    return t == KVK_Q8_0 ? 0 : t == KVK_Q4_0 ? 1 : t == KVK_Q4_1 ? 2 : t == KVK_Q2_1 ? 3 : -1;
}

/* out[j] = scale * dot(row_j, x) for j < n; leftover rows (n % 4) use the scalar row dot */
static TGT void rows_dot(kvk_type t, const void *rows, size_t stride, size_t n, size_t d, const float *x,
                         float scale, float *out, int allow_i16) {
    const size_t n4 = n & ~(size_t)3;
    /* prefetch distance: about 8 KiB ahead (DRAM latency x bandwidth on the development machine;
     * measured best among 2/8/16/32 KiB), at least two row groups */
    size_t pd = prefetch_rows(stride, 8);
    pd &= ~(size_t)3;
    const int kind = i16_kind(t);
    if (allow_i16 && kind >= 0 && d <= KVK_I16_MAX_D && n4 > 0) {
        /* query in 16-bit fixed point: its rounding (<= max|q| / 65534 per element) is far below
         * the keys' own 8-, 4- or 2-bit quantization error, and the block dots become exact integers */
        int16_t q16[KVK_I16_MAX_D];
        float qsum[KVK_I16_MAX_D / KVK_BLOCK];
        const __m128 scq = _mm_set1_ps(scale * query_i16(x, d, kind >= 2, q16, qsum)), sc = _mm_set1_ps(scale);
        const size_t row_bytes = kvk_row_bytes(t, d);
        for (size_t j = 0; j < n4; j += 4) {
            const char *base = (const char *)rows + j * stride;
            if (j + pd + 4 <= n)
                for (size_t pr = pd; pr < pd + 4; pr++)
                    for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(base + pr * stride + off, _MM_HINT_T0);
            __m128 r, mins;
            switch (kind) { /* constant kinds, so that each loop is specialized */
            case 0: r = dot4_i16(0, base, stride, q16, qsum, d, &mins); break;
            case 1: r = dot4_i16(1, base, stride, q16, qsum, d, &mins); break;
            case 2: r = dot4_i16(2, base, stride, q16, qsum, d, &mins); break;
            default: r = dot4_i16(3, base, stride, q16, qsum, d, &mins); break;
            }
            r = _mm_mul_ps(scq, r);
            _mm_storeu_ps(out + j, kind >= 2 ? _mm_fmadd_ps(sc, mins, r) : r);
        }
        for (size_t j = n4; j < n; j++) kvk_scalar_scores(t, x, (const char *)rows + j * stride, stride, 1, d, scale, out + j);
        return;
    }
    const __m128 sc = _mm_set1_ps(scale);
    const size_t row_bytes = kvk_row_bytes(t, d);
    /* measured: a clear win once the rows come from DRAM (matvec F16 49152x576: 17 -> 42 GB/s),
     * about 20-30% slower when the whole matrix sits in L2; decode streams weights and caches
     * far larger than the L3, so it is always on */
    const int prefetch = 1;
    /* software prefetch of the rows two groups ahead: the hardware prefetchers alone leave
     * memory bandwidth unused on long caches and large matrices */
#define RD_BODY(EXPR)                                                                                \
    for (size_t j = 0; j < n4; j += 4) {                                                              \
        const char *base = (const char *)rows + j * stride;                                           \
        if (prefetch && j + pd + 4 <= n)                                                              \
            for (size_t pr = pd; pr < pd + 4; pr++)                                                   \
                for (size_t off = 0; off < row_bytes; off += 64)                                      \
                    _mm_prefetch(base + pr * stride + off, _MM_HINT_T0);                              \
        _mm_storeu_ps(out + j, _mm_mul_ps(sc, EXPR));                                                 \
    }
    ROWS4_LOOP(t, RD_BODY)
#undef RD_BODY
    if (n4 < n) {
        const char *base = (const char *)rows + n4 * stride;
        for (size_t j = n4; j < n; j++) {
            float tmp;
            kvk_scalar_scores(t, x, base + (j - n4) * stride, stride, 1, d, scale, &tmp);
            out[j] = tmp;
        }
    }
}

/* ------------------------------------------------------------ attention building blocks */

static TGT void avx2_q2_1_weighted_sum_multi(const float *w, size_t w_stride, size_t m, const void *values,
                                             size_t value_stride, size_t n, size_t d, float *out, size_t out_stride);

/* q2_1 rows (this library's type, a cache format only) have only the 16-bit fixed-point path (the
 * scalar one past KVK_I16_MAX_D) and their own weighted-sum kernel (below). */
static TGT void avx2_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                            float scale, float *out) {
    if (t == KVK_Q2_1 && d > KVK_I16_MAX_D) { kvk_scalar_scores(t, q, keys, key_stride, n, d, scale, out); return; }
    rows_dot(t, keys, key_stride, n, d, q, scale, out, 1);
}

/* out[c0 .. c0 + 8*NV) += sum_j w[j] * row_j[c0 ..], NV vectors of 8 (always-inline, NV constant) */
INL void ws_chunk(kvk_type t, const float *w, const char *values, size_t stride, size_t n, size_t c0, int nv,
                  float *out) {
    __m256 acc[8];
    for (int v = 0; v < nv; v++) acc[v] = _mm256_loadu_ps(out + c0 + 8 * v);
    switch (t) {
    case KVK_F32:
        for (size_t j = 0; j < n; j++) {
            const __m256 wj = _mm256_set1_ps(w[j]);
            const float *r = (const float *)(values + j * stride) + c0;
            for (int v = 0; v < nv; v++) acc[v] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(r + 8 * v), acc[v]);
        }
        break;
    case KVK_F16:
        for (size_t j = 0; j < n; j++) {
            const __m256 wj = _mm256_set1_ps(w[j]);
            const uint16_t *r = (const uint16_t *)(values + j * stride) + c0;
            for (int v = 0; v < nv; v++) acc[v] = _mm256_fmadd_ps(wj, load_f16x8(r + 8 * v), acc[v]);
        }
        break;
    case KVK_BF16:
        for (size_t j = 0; j < n; j++) {
            const __m256 wj = _mm256_set1_ps(w[j]);
            const uint16_t *r = (const uint16_t *)(values + j * stride) + c0;
            for (int v = 0; v < nv; v++) acc[v] = _mm256_fmadd_ps(wj, load_bf16x8(r + 8 * v), acc[v]);
        }
        break;
    case KVK_Q8_0: /* c0 and nv are multiples of a block (32 elements = 4 vectors) */
        for (size_t j = 0; j < n; j++) {
            const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)(values + j * stride) + c0 / KVK_BLOCK;
            for (int v = 0; v < nv; v += 4, b++) {
                const __m256 s = _mm256_set1_ps(w[j] * h2f(b->d));
                for (int g = 0; g < 4; g++) acc[v + g] = _mm256_fmadd_ps(s, load_i8x8(b->qs + 8 * g), acc[v + g]);
            }
        }
        break;
    case KVK_Q4_0: {
        const __m256i off = _mm256_set1_epi32(8);
        for (size_t j = 0; j < n; j++) {
            const kvk_block_q4_0 *b = (const kvk_block_q4_0 *)(values + j * stride) + c0 / KVK_BLOCK;
            for (int v = 0; v < nv; v += 4, b++) {
                const __m256 s = _mm256_set1_ps(w[j] * h2f(b->d));
                for (int g = 0; g < 4; g++) acc[v + g] = _mm256_fmadd_ps(s, q4_group(b->qs, g, off), acc[v + g]);
            }
        }
        break;
    }
    case KVK_Q4_1: {
        const __m256i off = _mm256_setzero_si256();
        for (size_t j = 0; j < n; j++) {
            const kvk_block_q4_1 *b = (const kvk_block_q4_1 *)(values + j * stride) + c0 / KVK_BLOCK;
            for (int v = 0; v < nv; v += 4, b++) {
                const __m256 s = _mm256_set1_ps(w[j] * h2f(b->d));
                const __m256 m = _mm256_set1_ps(w[j] * h2f(b->m));
                for (int g = 0; g < 4; g++)
                    acc[v + g] = _mm256_add_ps(_mm256_fmadd_ps(s, q4_group(b->qs, g, off), m), acc[v + g]);
            }
        }
        break;
    }
    case KVK_Q2_1: break; /* not reached: the entry points route q2_1 elsewhere */
    }
    for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + c0 + 8 * v, acc[v]);
}

/* out += sum_j w[j] row_j over m rows starting at v (one row group, re-read from L1 per chunk) */
INL void ws_rows(kvk_type t, const float *w, const char *v, size_t value_stride, size_t m, size_t d, float *out) {
    const size_t d8 = d & ~(size_t)7;
    size_t c = 0;
    for (; c + 64 <= d8; c += 64) ws_chunk(t, w, v, value_stride, m, c, 8, out);
    for (; c + 32 <= d8; c += 32) ws_chunk(t, w, v, value_stride, m, c, 4, out);
    for (; c + 8 <= d8; c += 8) ws_chunk(t, w, v, value_stride, m, c, 1, out); /* f32/f16/bf16 only */
    if (c < d) { /* tail elements (float types, d % 8 != 0) */
        for (size_t j = 0; j < m; j++) {
            const char *row = v + j * value_stride;
            for (size_t i = c; i < d; i++) {
                float x;
                if (t == KVK_F32) memcpy(&x, row + 4 * i, 4);
                else {
                    uint16_t h;
                    memcpy(&h, row + 2 * i, 2);
                    x = t == KVK_F16 ? kvk_h2f(h) : kvk_bf2f(h);
                }
                out[i] += w[j] * x;
            }
        }
    }
}

static TGT void avx2_weighted_sum(kvk_type t, const float *w, const void *values, size_t value_stride, size_t n,
                                  size_t d, float *out) {
    if (t == KVK_Q2_1) { avx2_q2_1_weighted_sum_multi(w, n, 1, values, value_stride, n, d, out, d); return; }
    /* rows in groups of 32 so that a row group is re-read from L1 for every 64-element chunk */
    const size_t group = 32;
    const size_t row_bytes = kvk_row_bytes(t, d), pd = prefetch_rows(value_stride, group);
    for (size_t j0 = 0; j0 < n; j0 += group) {
        const size_t m = n - j0 < group ? n - j0 : group;
        if (j0 + pd + m <= n) prefetch_row_range((const char *)values, value_stride, row_bytes, j0 + pd, m);
        ws_rows(t, w + j0, (const char *)values + j0 * value_stride, value_stride, m, d, out);
    }
}

/* ------------------------------------------------------------ several query heads per KV head */

/* 8 elements of an f32 / f16 / bf16 row starting at element i */
INL __m256 load_row8(kvk_type t, const char *row, size_t i) {
    if (t == KVK_F32) return _mm256_loadu_ps((const float *)row + i);
    if (t == KVK_F16) return load_f16x8((const uint16_t *)row + i);
    return load_bf16x8((const uint16_t *)row + i);
}

INL float row_elem(kvk_type t, const char *row, size_t i) {
    if (t == KVK_F32) { float v; memcpy(&v, row + 4 * i, 4); return v; }
    uint16_t h;
    memcpy(&h, row + 2 * i, 2);
    return t == KVK_F16 ? kvk_h2f(h) : kvk_bf2f(h);
}

/* The sums of heads h and h + 1 (if h + 1 < M) over two rows, s = (h row 0, h row 1, h + 1 row 0,
 * h + 1 row 1), into res. */
INL void store_pair_sums(float res[4][2], int h, int M, __m128 s) {
    float tmp[4];
    _mm_storeu_ps(tmp, s);
    res[h][0] = tmp[0];
    res[h][1] = tmp[1];
    if (h + 1 < M) { res[h + 1][0] = tmp[2]; res[h + 1][1] = tmp[3]; }
}

/* res[h][k] = dot(q_h, row_k) for M (<= 4) heads and rows r0, r1 (float row types) */
INL void smq_pair_f(kvk_type t, const float *q, size_t qs, int M, const char *r0, const char *r1, size_t d,
                    float res[4][2]) {
    __m256 a[4][2];
    for (int h = 0; h < M; h++) a[h][0] = a[h][1] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= d; i += 8) {
        const __m256 k0 = load_row8(t, r0, i), k1 = load_row8(t, r1, i);
        for (int h = 0; h < M; h++) {
            const __m256 qv = _mm256_loadu_ps(q + h * qs + i);
            a[h][0] = _mm256_fmadd_ps(k0, qv, a[h][0]);
            a[h][1] = _mm256_fmadd_ps(k1, qv, a[h][1]);
        }
    }
    for (int h = 0; h < M; h += 2) {
        const int h1 = h + 1 < M ? h + 1 : h;
        store_pair_sums(res, h, M, hsum8x4(a[h][0], a[h][1], a[h1][0], a[h1][1]));
    }
    for (; i < d; i++) {
        const float k0 = row_elem(t, r0, i), k1 = row_elem(t, r1, i);
        for (int h = 0; h < M; h++) {
            res[h][0] += k0 * q[h * qs + i];
            res[h][1] += k1 * q[h * qs + i];
        }
    }
}

/* The same for the i16 kinds (see i16_block_bytes) against 16-bit fixed-point queries (row stride d,
 * block sums of q at qsum + h * d / 32 for kinds 2 and 3); returns raw integer-scaled sums (times the
 * per-head query scale by the caller) and, for kinds 2 and 3, the min terms in mres (times 1). */
INL void smq_pair_i16(int kind, const int16_t *q16, const float *qsum, int M, const char *r0, const char *r1,
                      size_t d, float res[4][2], float mres[4][2]) {
    const size_t bs = i16_block_bytes(kind), nb = d / KVK_BLOCK;
    __m256 a[4][2];
    float macc[4][2];
    for (int h = 0; h < M; h++) {
        a[h][0] = a[h][1] = _mm256_setzero_ps();
        macc[h][0] = macc[h][1] = 0.0f;
    }
    for (size_t b = 0; b < nb; b++) {
        __m256i k0[2], k1[2];
        __m256 dk[2];
        float mk[2] = {0.0f, 0.0f};
        load_block_i16(kind, r0 + b * bs, &k0[0], &k1[0], &dk[0], &mk[0]);
        load_block_i16(kind, r1 + b * bs, &k0[1], &k1[1], &dk[1], &mk[1]);
        for (int h = 0; h < M; h++) {
            const __m256i q0 = _mm256_loadu_si256((const __m256i *)(q16 + h * d + b * KVK_BLOCK));
            const __m256i q1 = _mm256_loadu_si256((const __m256i *)(q16 + h * d + b * KVK_BLOCK + 16));
            for (int rr = 0; rr < 2; rr++) {
                const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(k0[rr], q0), _mm256_madd_epi16(k1[rr], q1));
                a[h][rr] = _mm256_fmadd_ps(dk[rr], _mm256_cvtepi32_ps(p), a[h][rr]);
                if (kind >= 2) macc[h][rr] += mk[rr] * qsum[h * nb + b];
            }
        }
    }
    for (int h = 0; h < M; h += 2) {
        const int h1 = h + 1 < M ? h + 1 : h;
        store_pair_sums(res, h, M, hsum8x4(a[h][0], a[h][1], a[h1][0], a[h1][1]));
    }
    if (kind >= 2)
        for (int h = 0; h < M; h++) { mres[h][0] = macc[h][0]; mres[h][1] = macc[h][1]; }
}

/* One group of M <= 4 heads over all rows. */
INL void scores_group(kvk_type t, const float *q, size_t q_stride, int M, const void *keys, size_t key_stride,
                      size_t n, size_t d, float scale, float *out, size_t out_stride) {
    const char *kb = (const char *)keys;
    const size_t row_bytes = kvk_row_bytes(t, d);
    const size_t pd = prefetch_rows(key_stride, 8);
    float res[4][2], mres[4][2];
    const int kind = i16_kind(t);
    if (kind >= 0) {
        int16_t q16[4 * KVK_I16_MAX_D];
        float qsum[4 * KVK_I16_MAX_D / KVK_BLOCK], sq[4];
        for (int h = 0; h < M; h++)
            sq[h] = scale * query_i16(q + h * q_stride, d, kind >= 2, q16 + h * d, qsum + h * (d / KVK_BLOCK));
        for (size_t j = 0; j < n; j += 2) {
            const char *r0 = kb + j * key_stride, *r1 = j + 1 < n ? r0 + key_stride : r0;
            if (j + pd + 2 <= n)
                for (size_t pr = pd; pr < pd + 2; pr++)
                    for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(r0 + pr * key_stride + off, _MM_HINT_T0);
            switch (kind) { /* constant kinds, so that each loop is specialized */
            case 0: smq_pair_i16(0, q16, qsum, M, r0, r1, d, res, mres); break;
            case 1: smq_pair_i16(1, q16, qsum, M, r0, r1, d, res, mres); break;
            case 2: smq_pair_i16(2, q16, qsum, M, r0, r1, d, res, mres); break;
            default: smq_pair_i16(3, q16, qsum, M, r0, r1, d, res, mres); break;
            }
            for (int h = 0; h < M; h++) {
                float s0 = sq[h] * res[h][0], s1 = sq[h] * res[h][1];
                if (kind >= 2) { s0 += scale * mres[h][0]; s1 += scale * mres[h][1]; }
                out[h * out_stride + j] = s0;
                if (j + 1 < n) out[h * out_stride + j + 1] = s1;
            }
        }
        return;
    }
    for (size_t j = 0; j < n; j += 2) {
        const char *r0 = kb + j * key_stride, *r1 = j + 1 < n ? r0 + key_stride : r0;
        if (j + pd + 2 <= n)
            for (size_t pr = pd; pr < pd + 2; pr++)
                for (size_t off = 0; off < row_bytes; off += 64) _mm_prefetch(r0 + pr * key_stride + off, _MM_HINT_T0);
        smq_pair_f(t, q, q_stride, M, r0, r1, d, res);
        for (int h = 0; h < M; h++) {
            out[h * out_stride + j] = scale * res[h][0];
            if (j + 1 < n) out[h * out_stride + j + 1] = scale * res[h][1];
        }
    }
}

static TGT void avx2_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys,
                                  size_t key_stride, size_t n, size_t d, float scale, float *out, size_t out_stride) {
    const int supported = t == KVK_F32 || t == KVK_F16 || t == KVK_BF16 || (i16_kind(t) >= 0 && d <= KVK_I16_MAX_D);
    if (!supported || m == 1) {
        for (size_t h = 0; h < m; h++) avx2_scores(t, q + h * q_stride, keys, key_stride, n, d, scale, out + h * out_stride);
        return;
    }
    for (size_t h0 = 0; h0 < m; h0 += 4) {
        const size_t g = m - h0 < 4 ? m - h0 : 4;
        const float *qg = q + h0 * q_stride;
        float *og = out + h0 * out_stride;
#define SG_T(TT)                                                                                     \
    switch (g) {                                                                                      \
    case 1: scores_group(TT, qg, q_stride, 1, keys, key_stride, n, d, scale, og, out_stride); break;  \
    case 2: scores_group(TT, qg, q_stride, 2, keys, key_stride, n, d, scale, og, out_stride); break;  \
    case 3: scores_group(TT, qg, q_stride, 3, keys, key_stride, n, d, scale, og, out_stride); break;  \
    default: scores_group(TT, qg, q_stride, 4, keys, key_stride, n, d, scale, og, out_stride); break; \
    }
        switch (t) {
        case KVK_F32: SG_T(KVK_F32) break;
        case KVK_F16: SG_T(KVK_F16) break;
        case KVK_BF16: SG_T(KVK_BF16) break;
        case KVK_Q8_0: SG_T(KVK_Q8_0) break;
        case KVK_Q4_0: SG_T(KVK_Q4_0) break;
        case KVK_Q4_1: SG_T(KVK_Q4_1) break;
        default: SG_T(KVK_Q2_1) break;
        }
#undef SG_T
    }
}

/* Several heads over the same rows.
 * Float types: per group of 32 rows, every head's weighted sum in turn, so the rows come from memory
 * once and from L1 for the other heads (the conversions repeat, which is cheap for these types).
 * Block types: the conversion is the expensive part, so each converted vector feeds all heads of a
 * group (up to 3 heads, accumulators kept within the 16 registers). Both chosen by measurement. */
/* out_h[c0 .. c0 + 8 nv) += sum_j w_h[j] row_j[c0 ..] for M <= 3 heads; nv = 4 (any type, c0 % 32 == 0
 * for block types) or 1 (float types). */
INL void wsm_chunk(kvk_type t, const float *w, size_t w_stride, int M, const char *values, size_t stride, size_t n,
                   size_t c0, int nv, float *out, size_t out_stride) {
    __m256 acc[3][4];
    for (int h = 0; h < M; h++)
        for (int v = 0; v < nv; v++) acc[h][v] = _mm256_loadu_ps(out + h * out_stride + c0 + 8 * v);
    /* one converted vector live at a time: 12 accumulators + 3 weights + 1 vector = 16 registers */
    for (size_t j = 0; j < n; j++) {
        const char *row = values + j * stride;
        __m256 wv[3];
        if (t == KVK_Q8_0 || t == KVK_Q4_0 || t == KVK_Q4_1) {
            const char *blk = row + (c0 / KVK_BLOCK) * i16_block_bytes(i16_kind(t));
            const int g0 = (int)((c0 % KVK_BLOCK) / 8);
            uint16_t dh;
            memcpy(&dh, blk, 2);
            const float dv = h2f(dh);
            for (int h = 0; h < M; h++) wv[h] = _mm256_set1_ps(w[h * w_stride + j] * dv);
            const __m256i off = _mm256_set1_epi32(t == KVK_Q4_0 ? 8 : 0);
            for (int v = 0; v < nv; v++) {
                const __m256 vec = t == KVK_Q8_0 ? load_i8x8((const int8_t *)blk + 2 + 8 * (g0 + v))
                                                 : q4_group((const uint8_t *)blk + (t == KVK_Q4_1 ? 4 : 2), g0 + v, off);
                for (int h = 0; h < M; h++) acc[h][v] = _mm256_fmadd_ps(wv[h], vec, acc[h][v]);
            }
        } else {
            for (int h = 0; h < M; h++) wv[h] = _mm256_set1_ps(w[h * w_stride + j]);
            for (int v = 0; v < nv; v++) {
                const __m256 vec = load_row8(t, row, c0 + 8 * v);
                for (int h = 0; h < M; h++) acc[h][v] = _mm256_fmadd_ps(wv[h], vec, acc[h][v]);
            }
        }
    }
    for (int h = 0; h < M; h++)
        for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + h * out_stride + c0 + 8 * v, acc[h][v]);
}

INL void wsm_group(kvk_type t, const float *w, size_t w_stride, int M, const void *values, size_t value_stride,
                   size_t n, size_t d, float *out, size_t out_stride) {
    const size_t group = 32; /* rows re-read from L1 for every chunk of the head dimension */
    const size_t d8 = d & ~(size_t)7;
    for (size_t j0 = 0; j0 < n; j0 += group) {
        const size_t m = n - j0 < group ? n - j0 : group;
        const char *v = (const char *)values + j0 * value_stride;
        size_t c = 0;
        /* M <= 2: 32-element chunks (8 accumulators); M = 3: 16-element chunks (6 accumulators) */
        if (M <= 2)
            for (; c + 32 <= d8; c += 32) wsm_chunk(t, w + j0, w_stride, M, v, value_stride, m, c, 4, out, out_stride);
        for (; c + 16 <= d8; c += 16) wsm_chunk(t, w + j0, w_stride, M, v, value_stride, m, c, 2, out, out_stride);
        for (; c + 8 <= d8; c += 8) wsm_chunk(t, w + j0, w_stride, M, v, value_stride, m, c, 1, out, out_stride);
        if (t == KVK_Q4_1) /* the mins: out_h[block b] += sum_j w_h[j] * m_jb */
            for (size_t b = 0; b < d / KVK_BLOCK; b++) {
                float ms[3] = {0.0f, 0.0f, 0.0f};
                for (size_t j = 0; j < m; j++) {
                    uint16_t mh;
                    memcpy(&mh, v + j * value_stride + b * sizeof(kvk_block_q4_1) + 2, 2);
                    const float mv = h2f(mh);
                    for (int h = 0; h < M; h++) ms[h] += w[h * w_stride + j0 + j] * mv;
                }
                for (int h = 0; h < M; h++) {
                    float *o = out + h * out_stride + b * KVK_BLOCK;
                    const __m256 mv = _mm256_set1_ps(ms[h]);
                    for (int k = 0; k < 4; k++) _mm256_storeu_ps(o + 8 * k, _mm256_add_ps(_mm256_loadu_ps(o + 8 * k), mv));
                }
            }
        for (; c < d; c++) /* float types, d % 8 != 0 */
            for (size_t j = 0; j < m; j++) {
                const float x = row_elem(t, v + j * value_stride, c);
                for (int h = 0; h < M; h++) out[h * out_stride + c] += w[h * w_stride + j0 + j] * x;
            }
    }
}

static TGT void avx2_weighted_sum_multi(kvk_type t, const float *w, size_t w_stride, size_t m, const void *values,
                                        size_t value_stride, size_t n, size_t d, float *out, size_t out_stride) {
    if (t == KVK_Q2_1) { avx2_q2_1_weighted_sum_multi(w, w_stride, m, values, value_stride, n, d, out, out_stride); return; }
    if (t == KVK_Q8_0 || t == KVK_Q4_0 || t == KVK_Q4_1) {
        for (size_t h0 = 0; h0 < m; h0 += 3) {
            const size_t g = m - h0 < 3 ? m - h0 : 3;
            const float *wg = w + h0 * w_stride;
            float *og = out + h0 * out_stride;
#define WSM_T(TT)                                                                                    \
    switch (g) {                                                                                      \
    case 1: wsm_group(TT, wg, w_stride, 1, values, value_stride, n, d, og, out_stride); break;        \
    case 2: wsm_group(TT, wg, w_stride, 2, values, value_stride, n, d, og, out_stride); break;        \
    default: wsm_group(TT, wg, w_stride, 3, values, value_stride, n, d, og, out_stride); break;       \
    }
            if (t == KVK_Q8_0) { WSM_T(KVK_Q8_0) } else if (t == KVK_Q4_0) { WSM_T(KVK_Q4_0) } else { WSM_T(KVK_Q4_1) }
#undef WSM_T
        }
        return;
    }
    const size_t group = 32;
    const size_t row_bytes = kvk_row_bytes(t, d), pd = prefetch_rows(value_stride, group);
    for (size_t j0 = 0; j0 < n; j0 += group) {
        const size_t rows = n - j0 < group ? n - j0 : group;
        const char *v = (const char *)values + j0 * value_stride;
        if (j0 + pd + rows <= n) prefetch_row_range((const char *)values, value_stride, row_bytes, j0 + pd, rows);
        for (size_t h = 0; h < m; h++) ws_rows(t, w + h * w_stride + j0, v, value_stride, rows, d, out + h * out_stride);
    }
}

/* ------------------------------------------------------------ matrix products (f32 activations) */

static TGT void avx2_matvec(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, float *y) {
    rows_dot(wt, w, kvk_row_bytes(wt, cols), rows, cols, x, 1.0f, y, 0); /* exact f32 x: no fixed point */
}

static TGT void avx2_matmul(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, size_t n,
                            float *y, size_t ldy) {
    const size_t rb = kvk_row_bytes(wt, cols);
    const size_t rows4 = rows & ~(size_t)3;
    /* 4 weight rows stay in L1 while every activation row passes over them */
    for (size_t r = 0; r < rows4; r += 4) {
        const char *base = (const char *)w + r * rb;
        for (size_t i = 0; i < n; i++) {
            const __m128 s = dot4(wt, base, rb, x + i * cols, cols);
            _mm_storeu_ps(y + i * ldy + r, s);
        }
    }
    if (rows4 < rows)
        for (size_t i = 0; i < n; i++)
            kvk_scalar_matvec(wt, (const char *)w + rows4 * rb, rows - rows4, cols, x + i * cols, y + i * ldy + rows4);
}

/* ------------------------------------------------------------ int8 activations */

static TGT void avx2_quantize_act(const float *x, kvk_block_q8_act *out, size_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (size_t b = 0; b < n / KVK_BLOCK; b++, x += KVK_BLOCK) {
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        for (int g = 0; g < 4; g++) {
            v[g] = _mm256_loadu_ps(x + 8 * g);
            mx = _mm256_max_ps(mx, _mm256_and_ps(v[g], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int g = 0; g < 4; g++) {
            /* roundf: truncate, then step away from zero when the dropped fraction is >= 1/2 */
            const __m256 y = _mm256_mul_ps(v[g], idv);
            const __m256 t = _mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 frac = _mm256_and_ps(_mm256_sub_ps(y, t), absmask);
            const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                                              _mm256_or_ps(one, _mm256_andnot_ps(absmask, y)));
            q[g] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
        }
        const __m256i s01 = _mm256_packs_epi32(q[0], q[1]), s23 = _mm256_packs_epi32(q[2], q[3]);
        const __m256i sum16 = _mm256_add_epi16(s01, s23);
        const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(s01, s23),
                                                          _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].qs, bytes);
        const __m256i sum32 = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum32), _mm256_extracti128_si256(sum32, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        out[b].d = d;
        out[b].s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

/* Sum of signed products of 32 unsigned bytes ux (0..127 range or 0..15) and 32 signed bytes y, as 8 f32. */
INL __m256 dot_us8(__m256i ux, __m256i y) {
    const __m256i p16 = _mm256_maddubs_epi16(ux, y);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* Weight block kinds for the integer path: the i16 kinds' numbering, so i16_block_bytes sizes them. */
enum { WQ8_0 = 0, WQ4_0 = 1, WQ4_1 = 2 };

/* Loads weight block b of a row: returns the unsigned bytes for maddubs (for q8_0 / q4_0 the
 * absolute values, with *sign the signed values whose signs move onto the activations; for q4_1
 * the raw nibbles) and *dm = [d, m, 0, 0] (m only meaningful for q4_1) from one 4-byte load. */
INL __m256i wload(int kind, const char *row, size_t b, __m256i *sign, __m128 *dm) {
    const char *blk = row + b * i16_block_bytes(kind);
    int32_t head;
    memcpy(&head, blk, 4);
    *dm = _mm_cvtph_ps(_mm_cvtsi32_si128(head));
    if (kind == WQ8_0) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 2));
        *sign = q;
        return _mm256_sign_epi8(q, q);
    } else if (kind == WQ4_0) {
        const __m256i q = _mm256_sub_epi8(unpack_nibbles_fast((const uint8_t *)blk + 2), _mm256_set1_epi8(8));
        *sign = q;
        return _mm256_sign_epi8(q, q);
    } else {
        return unpack_nibbles_fast((const uint8_t *)blk + 4);
    }
}

/* A register tile: R weight rows x C activation rows, all blocks.
 * y[c * ldy + r] = sum_b d_w d_x dot(q_w, q_x) (+ m_w s_x for q4_1).
 * Per block, [d_w, m_w] * [d_x, s_x] gives both scale products in one multiply; the m s product
 * is added into lane 0 of the same accumulator (only the horizontal sum matters). */
INL void q8act_tile(int kind, const char *w, size_t rb, const kvk_block_q8_act *xq, size_t nb, int R, int C,
                    float *y, size_t ldy) {
    __m256 acc[4][4];
    __m128 macc[4]; /* q4_1 with one activation row: m * s products in lane 1 (spare registers) */
    const int sep_m = kind == WQ4_1 && C == 1;
    for (int r = 0; r < R; r++) {
        macc[r] = _mm_setzero_ps();
        for (int c = 0; c < C; c++) acc[r][c] = _mm256_setzero_ps();
    }
    for (size_t b = 0; b < nb; b++) {
        __m256i wu[4], ws[4];
        __m128 dm[4];
        for (int r = 0; r < R; r++) wu[r] = wload(kind, w + r * rb, b, &ws[r], &dm[r]);
        /* prefetch the same block 8 tiles ahead (~20 KB: this machine's memory latency needs that
         * much in flight). q8_0: every block (measured 10 -> 48 GB/s on 49152x576, 0.84-0.95 of read
         * bandwidth). The q4 kinds only when the weights stream past once (one activation row: decode)
         * and only every third block, about once per cache line: the default model's decode +15-50 %
         * on Zen 3, whose weights come from DRAM; a prefetch per block cost speed from cache */
        if (kind == WQ8_0 || (C == 1 && b % 3 == 0))
            for (int r = 0; r < R; r++) _mm_prefetch(w + (r + 8 * R) * rb + b * i16_block_bytes(kind), _MM_HINT_T0);
        for (int c = 0; c < C; c++) {
            const kvk_block_q8_act *a = xq + c * nb + b;
            const __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
            const __m128 ds = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)a)); /* [d_x, s_x, 0, 0] */
            for (int r = 0; r < R; r++) {
                const __m256i ya = kind == WQ4_1 ? qa : _mm256_sign_epi8(qa, ws[r]);
                const __m256 p = dot_us8(wu[r], ya);
                const __m128 prod = _mm_mul_ps(dm[r], ds);
                acc[r][c] = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), p, acc[r][c]);
                if (sep_m) macc[r] = _mm_add_ps(macc[r], prod);
                else if (kind == WQ4_1)
                    acc[r][c] = _mm256_add_ps(acc[r][c], _mm256_zextps128_ps256(_mm_insert_ps(prod, prod, 0x4E)));
            }
        }
    }
    for (int r = 0; r < R && sep_m; r++) /* fold lane 1 (sum of m s) into lane 0 of the accumulator */
        acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_zextps128_ps256(_mm_insert_ps(macc[r], macc[r], 0x4E)));
    for (int c = 0; c < C; c++) {
        if (R == 4) {
            _mm_storeu_ps(y + c * ldy, hsum8x4(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
        } else {
            for (int r = 0; r < R; r++) y[c * ldy + r] = hsum8(acc[r][c]);
        }
    }
}

INL void q8act_product(int kind, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq, size_t n,
                       float *y, size_t ldy) {
    const size_t rb = kvk_row_bytes(kind == WQ8_0 ? KVK_Q8_0 : kind == WQ4_0 ? KVK_Q4_0 : KVK_Q4_1, cols);
    const size_t nb = cols / KVK_BLOCK;
    const char *wc = (const char *)w;
    if (n == 1) {
        size_t r = 0;
        for (; r + 4 <= rows; r += 4) q8act_tile(kind, wc + r * rb, rb, xq, nb, 4, 1, y + r, ldy);
        for (; r < rows; r++) q8act_tile(kind, wc + r * rb, rb, xq, nb, 1, 1, y + r, ldy);
        return;
    }
    /* activation rows in panels that stay in L2 while the weights stream past in register tiles:
     * each weight block is unpacked once per tile and reused for every activation row of the tile */
    const size_t panel = 64;
    for (size_t i0 = 0; i0 < n; i0 += panel) {
        const size_t m = n - i0 < panel ? n - i0 : panel;
        size_t r = 0;
        /* tile shapes measured on Zen 5 (1536x576, 64 activation rows): q4 kinds are fastest as
         * 4 weight rows x 3 activation rows (+18% over 4x2), q8_0 as 2 x 4 */
        if (kind == WQ8_0) {
            for (; r + 2 <= rows; r += 2) {
                size_t i = 0;
                for (; i + 4 <= m; i += 4)
                    q8act_tile(kind, wc + r * rb, rb, xq + (i0 + i) * nb, nb, 2, 4, y + (i0 + i) * ldy + r, ldy);
                for (; i < m; i++)
                    q8act_tile(kind, wc + r * rb, rb, xq + (i0 + i) * nb, nb, 2, 1, y + (i0 + i) * ldy + r, ldy);
            }
        } else {
            for (; r + 4 <= rows; r += 4) {
                size_t i = 0;
                for (; i + 3 <= m; i += 3)
                    q8act_tile(kind, wc + r * rb, rb, xq + (i0 + i) * nb, nb, 4, 3, y + (i0 + i) * ldy + r, ldy);
                for (; i < m; i++)
                    q8act_tile(kind, wc + r * rb, rb, xq + (i0 + i) * nb, nb, 4, 1, y + (i0 + i) * ldy + r, ldy);
            }
        }
        for (; r < rows; r++)
            for (size_t i = 0; i < m; i++)
                q8act_tile(kind, wc + r * rb, rb, xq + (i0 + i) * nb, nb, 1, 1, y + (i0 + i) * ldy + r, ldy);
    }
}

static TGT void avx2_matmul_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                                  size_t n, float *y, size_t ldy) {
    switch (wt) {
    case KVK_Q8_0: q8act_product(WQ8_0, w, rows, cols, xq, n, y, ldy); return;
    case KVK_Q4_0: q8act_product(WQ4_0, w, rows, cols, xq, n, y, ldy); return;
    case KVK_Q4_1: q8act_product(WQ4_1, w, rows, cols, xq, n, y, ldy); return;
    default: kvk_scalar_matmul_q8act(wt, w, rows, cols, xq, n, y, ldy); return;
    }
}

static TGT void avx2_matvec_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                                  float *y) {
    avx2_matmul_q8act(wt, w, rows, cols, xq, 1, y, rows);
}

/* One four-row group in kvk_pack_rows4's layout x C activation rows; kind WQ4_1 (80 bytes per block) or
 * WQ8_0 (136). Per block, one conversion of the four rows' f16 headers and one multiply by the activation's
 * scales give every row's scale products; the four rows' integer dots are summed pairwise into
 * [r0 r1 r2 r3 | r0 r1 r2 r3] (two hadd_epi32 levels; q4_1's nibble x int8 pair sums, at most
 * 2 * 15 * 128 = 3840, take a first level in 16 bits), so one convert and one FMA serve four rows: about half
 * the instructions per block of q8act_tile's single rows (1.6x its speed from L2 or L3 on Zen 3).
 * Q4_1: [d, m] pairs times [d_x, s_x] give [d0 d_x, m0 s_x, d1 d_x, ... ]; the m s terms add up in the odd
 * lanes of macc and a permute lays out [d0 d_x .. d3 d_x] twice. Q8_0: the signs move onto the activations
 * as in wload. `stream`: the weights pass once (decode): prefetch the block 8 groups ahead. */
INL void rows4_tile(int kind, const char *g, size_t nb, const kvk_block_q8_act *xq, int C, int stream, float *y,
                    size_t ldy) {
    const size_t bs = 4 * i16_block_bytes(kind); /* a group's block: four GGUF blocks' bytes */
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i dlanes = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m256 acc[3], macc[3];
    for (int c = 0; c < C; c++) acc[c] = macc[c] = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const char *o = g + b * bs;
        if (stream) {
            _mm_prefetch(o + 8 * bs * nb, _MM_HINT_T0);
            if (kind == WQ8_0) _mm_prefetch(o + 8 * bs * nb + 64, _MM_HINT_T0);
        }
        if (kind == WQ4_1) {
            const __m256 dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
            const __m256i u0 = unpack_nibbles_fast((const uint8_t *)o + 16), u1 = unpack_nibbles_fast((const uint8_t *)o + 32);
            const __m256i u2 = unpack_nibbles_fast((const uint8_t *)o + 48), u3 = unpack_nibbles_fast((const uint8_t *)o + 64);
            for (int c = 0; c < C; c++) {
                const kvk_block_q8_act *a = xq + c * nb + b;
                const __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
                const __m256 p = _mm256_mul_ps(dm, _mm256_castpd_ps(_mm256_broadcast_sd((const double *)a)));
                macc[c] = _mm256_add_ps(macc[c], p);
                const __m256i s01 = _mm256_hadd_epi16(_mm256_maddubs_epi16(u0, qa), _mm256_maddubs_epi16(u1, qa));
                const __m256i s23 = _mm256_hadd_epi16(_mm256_maddubs_epi16(u2, qa), _mm256_maddubs_epi16(u3, qa));
                const __m256i h = _mm256_hadd_epi32(_mm256_madd_epi16(s01, ones), _mm256_madd_epi16(s23, ones));
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_permutevar8x32_ps(p, dlanes), acc[c]);
            }
        } else {
            const __m128i h4 = _mm_loadl_epi64((const __m128i *)o);
            const __m256 d = _mm256_cvtph_ps(_mm_unpacklo_epi64(h4, h4)); /* [d0 d1 d2 d3 | d0 d1 d2 d3] */
            __m256i q[4];
            for (int r = 0; r < 4; r++) q[r] = _mm256_loadu_si256((const __m256i *)(o + 8 + 32 * r));
            for (int c = 0; c < C; c++) {
                const kvk_block_q8_act *a = xq + c * nb + b;
                const __m256i qa = _mm256_loadu_si256((const __m256i *)a->qs);
                __m256i i[4];
                for (int r = 0; r < 4; r++)
                    i[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q[r], q[r]), _mm256_sign_epi8(qa, q[r])), ones);
                const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(i[0], i[1]), _mm256_hadd_epi32(i[2], i[3]));
                acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), _mm256_mul_ps(d, _mm256_broadcast_ss(&a->d)), acc[c]);
            }
        }
    }
    for (int c = 0; c < C; c++) {
        __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[c]), _mm256_extractf128_ps(acc[c], 1));
        if (kind == WQ4_1)
            v = _mm_add_ps(v, _mm_shuffle_ps(_mm256_castps256_ps128(macc[c]), _mm256_extractf128_ps(macc[c], 1), 0xDD));
        _mm_storeu_ps(y + c * ldy, v);
    }
}

INL void rows4_product(int kind, const char *w, size_t rows, size_t cols, const kvk_block_q8_act *xq, size_t n,
                       float *y, size_t ldy) {
    const size_t nb = cols / KVK_BLOCK, rb = nb * i16_block_bytes(kind), full = rows / 4 * 4;
    if (n == 1) {
        for (size_t r = 0; r < full; r += 4) rows4_tile(kind, w + r * rb, nb, xq, 1, 1, y + r, ldy);
    } else {
        /* activation rows in panels that stay in L2 while each group serves them a few at a time */
        const size_t panel = 64;
        for (size_t i0 = 0; i0 < n; i0 += panel) {
            const size_t m = n - i0 < panel ? n - i0 : panel;
            for (size_t r = 0; r < full; r += 4) {
                size_t i = 0;
                for (; i + 3 <= m; i += 3)
                    rows4_tile(kind, w + r * rb, nb, xq + (i0 + i) * nb, 3, 0, y + (i0 + i) * ldy + r, ldy);
                for (; i < m; i++) rows4_tile(kind, w + r * rb, nb, xq + (i0 + i) * nb, 1, 0, y + (i0 + i) * ldy + r, ldy);
            }
        }
    }
    if (full < rows) q8act_product(kind, w + full * rb, rows - full, cols, xq, n, y + full, ldy);
}

static TGT void avx2_matmul_q8act_rows4(kvk_type wt, const void *w, size_t rows, size_t cols,
                                        const kvk_block_q8_act *xq, size_t n, float *y, size_t ldy) {
    switch (wt) {
    case KVK_Q4_1: rows4_product(WQ4_1, (const char *)w, rows, cols, xq, n, y, ldy); return;
    case KVK_Q8_0: rows4_product(WQ8_0, (const char *)w, rows, cols, xq, n, y, ldy); return;
    default: avx2_matmul_q8act(wt, w, rows, cols, xq, n, y, ldy); return;
    }
}

/* ------------------------------------------------------------ activations, norms */

static TGT void avx2_rmsnorm(const float *x, const float *weight, float *y, size_t n, float eps) {
    if (n == 0) return;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        s0 = _mm256_fmadd_ps(a, a, s0);
        s1 = _mm256_fmadd_ps(b, b, s1);
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_loadu_ps(x + i);
        s0 = _mm256_fmadd_ps(a, a, s0);
    }
    float ss = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    const __m256 iv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), iv), _mm256_loadu_ps(weight + i)));
    for (; i < n; i++) y[i] = x[i] * inv * weight[i];
}

static TGT void avx2_silu_mul(const float *gate, const float *up, float *out, size_t n) {
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i), u = _mm256_loadu_ps(up + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u));
    }
    for (; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static TGT float avx2_softmax_unnormalized(float *x, size_t n, float *shift) {
    __m256 mv = _mm256_set1_ps(*shift);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float mx = _mm_cvtss_f32(m4);
    for (; i < n; i++) if (x[i] > mx) mx = x[i];
    *shift = mx;
    if (mx == -INFINITY) {
        for (i = 0; i < n; i++) x[i] = 0.0f;
        return 0.0f;
    }
    const __m256 mb = _mm256_set1_ps(mx);
    __m256 sv = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mb));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    float s = hsum8(sv);
    for (; i < n; i++) {
        const float e = expf(x[i] - mx);
        x[i] = e;
        s += e;
    }
    return s;
}

/* ------------------------------------------------------------ RoPE */

/* sin and cos of 4 doubles (|x| < 2^20): Cody-Waite reduction by pi/2 with a three-part constant
 * (fdlibm's), Taylor polynomials on [-pi/4, pi/4] (error < 1e-13), quadrant selection. Rounded to
 * f32 afterwards, this matches a correctly rounded sinf/cosf except in rare near-tie cases. */
INL void sincos4(__m256d x, __m256d *sn, __m256d *cs) {
    const __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(6.36619772367581382433e-01)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.57079632673412561417e+00), x);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.07710050630396597660e-11), r);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(2.02226624879595063154e-21), r);
    const __m256d r2 = _mm256_mul_pd(r, r);
    __m256d ps = _mm256_set1_pd(1.0 / 6227020800.0);
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(-1.0 / 39916800.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(1.0 / 362880.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(-1.0 / 5040.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(1.0 / 120.0));
    ps = _mm256_fmadd_pd(ps, r2, _mm256_set1_pd(-1.0 / 6.0));
    const __m256d sin_r = _mm256_fmadd_pd(_mm256_mul_pd(ps, r2), r, r);
    __m256d pc = _mm256_set1_pd(1.0 / 479001600.0);
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(-1.0 / 3628800.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(1.0 / 40320.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(-1.0 / 720.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(1.0 / 24.0));
    pc = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(-0.5));
    const __m256d cos_r = _mm256_fmadd_pd(pc, r2, _mm256_set1_pd(1.0));
    /* quadrant q = k mod 4: sin x = [s, c, -s, -c][q], cos x = [c, -s, -c, s][q] */
    const __m256i q = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
    const __m256i one = _mm256_set1_epi64x(1), two = _mm256_set1_epi64x(2);
    const __m256d swap = _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(q, one), one));
    const __m256d a = _mm256_blendv_pd(sin_r, cos_r, swap), b = _mm256_blendv_pd(cos_r, sin_r, swap);
    const __m256d sign = _mm256_set1_pd(-0.0);
    const __m256d neg_s = _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(q, two), two));
    const __m256d neg_c = _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(_mm256_add_epi64(q, one), two), two));
    *sn = _mm256_xor_pd(a, _mm256_and_pd(neg_s, sign));
    *cs = _mm256_xor_pd(b, _mm256_and_pd(neg_c, sign));
}

#define KVK_ROPE_MAX_HALF 512

static TGT void avx2_rope(float *x, size_t rows, size_t heads, size_t d, size_t row_stride, const int32_t *positions,
                          const float *inv_freq, kvk_rope_pairing pairing) {
    const size_t half = d / 2;
    if (half > KVK_ROPE_MAX_HALF) {
        kvk_scalar_rope(x, rows, heads, d, row_stride, positions, inv_freq, pairing);
        return;
    }
    float c[KVK_ROPE_MAX_HALF + 8], sn[KVK_ROPE_MAX_HALF + 8];
    float cd[2 * KVK_ROPE_MAX_HALF], sd[2 * KVK_ROPE_MAX_HALF]; /* NORM: duplicated, sd signed -s, +s */
    for (size_t r = 0; r < rows; r++) {
        const float p = (float)positions[r];
        size_t i = 0;
        for (; i < half; i += 4) { /* angles in f32 (as HF), sin/cos in double, rounded to f32 */
            float ang[4] = {0, 0, 0, 0};
            for (size_t k = 0; k < 4 && i + k < half; k++) ang[k] = p * inv_freq[i + k];
            __m256d sv, cv;
            sincos4(_mm256_cvtps_pd(_mm_loadu_ps(ang)), &sv, &cv);
            _mm_storeu_ps(c + i, _mm256_cvtpd_ps(cv));
            _mm_storeu_ps(sn + i, _mm256_cvtpd_ps(sv));
        }
        float *row = x + r * row_stride;
        if (pairing == KVK_ROPE_NEOX) {
            for (size_t h = 0; h < heads; h++) {
                float *v = row + h * d;
                size_t k = 0;
                for (; k + 8 <= half; k += 8) {
                    const __m256 a = _mm256_loadu_ps(v + k), b = _mm256_loadu_ps(v + k + half);
                    const __m256 cv = _mm256_loadu_ps(c + k), sv = _mm256_loadu_ps(sn + k);
                    _mm256_storeu_ps(v + k, _mm256_fmsub_ps(a, cv, _mm256_mul_ps(b, sv)));
                    _mm256_storeu_ps(v + k + half, _mm256_fmadd_ps(b, cv, _mm256_mul_ps(a, sv)));
                }
                for (; k < half; k++) {
                    const float a = v[k], b = v[k + half];
                    v[k] = a * c[k] - b * sn[k];
                    v[k + half] = b * c[k] + a * sn[k];
                }
            }
        } else {
            for (size_t k = 0; k < half; k++) {
                cd[2 * k] = cd[2 * k + 1] = c[k];
                sd[2 * k] = -sn[k];
                sd[2 * k + 1] = sn[k];
            }
            const size_t dd = 2 * half;
            for (size_t h = 0; h < heads; h++) {
                float *v = row + h * d;
                size_t k = 0;
                for (; k + 8 <= dd; k += 8) {
                    const __m256 a = _mm256_loadu_ps(v + k);
                    const __m256 sw = _mm256_permute_ps(a, 0xB1); /* swap each pair */
                    _mm256_storeu_ps(v + k, _mm256_fmadd_ps(a, _mm256_loadu_ps(cd + k), _mm256_mul_ps(sw, _mm256_loadu_ps(sd + k))));
                }
                for (; k < dd; k += 2) {
                    const float a = v[k], b = v[k + 1];
                    v[k] = a * cd[k] - b * sn[k / 2];
                    v[k + 1] = b * cd[k] + a * sn[k / 2];
                }
            }
        }
    }
}

/* ------------------------------------------------------------ KIVI keys and q2_1 values */

/* The 8 codes of channels 8k .. 8k + 7 of 8 packed code bytes (shift = k * bits), as floats. */
INL __m256 codes8(__m128i raw, int shift, __m128i mask) {
    const __m128i t = _mm_and_si128(_mm_srl_epi16(raw, _mm_cvtsi32_si128(shift)), mask);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(t));
}

/* The 32 codes of one 32-channel chunk of a KIVI code row (packed like q2_1 / q4_1 codes) as bytes,
 * in channel order. */
INL __m256i kivi_codes32(int bits, const uint8_t *cb) {
    return bits == 4 ? unpack_nibbles_fast(cb) : unpack_2bit_fast(cb);
}

/* The four int32 horizontal sums of a0..a3 (exact) as floats. */
INL __m128 hsum8x4_i32(__m256i a0, __m256i a1, __m256i a2, __m256i a3) {
    const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
    return _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1)));
}

/* Two code rows against M <= 4 fixed-point queries q16 (row stride d): exact integer dots, as floats
 * in res[h][row] (times the per-head query scale by the caller). */
INL void kivi_pair_i16(int bits, const int16_t *q16, int M, const uint8_t *r0, const uint8_t *r1, size_t d,
                       float res[4][2]) {
    const size_t chunk_bytes = 4 * (size_t)bits;
    __m256i a[4][2];
    for (int h = 0; h < M; h++) a[h][0] = a[h][1] = _mm256_setzero_si256();
    for (size_t c0 = 0; c0 < d; c0 += KVK_BLOCK) {
        const __m256i c[2] = {kivi_codes32(bits, r0 + c0 / KVK_BLOCK * chunk_bytes),
                              kivi_codes32(bits, r1 + c0 / KVK_BLOCK * chunk_bytes)};
        __m256i k0[2], k1[2];
        for (int rr = 0; rr < 2; rr++) {
            k0[rr] = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(c[rr]));
            k1[rr] = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(c[rr], 1));
        }
        for (int h = 0; h < M; h++) {
            const __m256i q0 = _mm256_loadu_si256((const __m256i *)(q16 + h * d + c0));
            const __m256i q1 = _mm256_loadu_si256((const __m256i *)(q16 + h * d + c0 + 16));
            for (int rr = 0; rr < 2; rr++)
                a[h][rr] = _mm256_add_epi32(a[h][rr], _mm256_add_epi32(_mm256_madd_epi16(k0[rr], q0),
                                                                       _mm256_madd_epi16(k1[rr], q1)));
        }
    }
    for (int h = 0; h < M; h += 2) {
        const int h1 = h + 1 < M ? h + 1 : h;
        store_pair_sums(res, h, M, hsum8x4_i32(a[h][0], a[h][1], a[h1][0], a[h1][1]));
    }
}

INL void kivi_group_i16(int bits, const int16_t *q16, int M, const float *sq, const float *bias, const void *codes,
                        size_t code_stride, size_t n, size_t d, float *out, size_t out_stride) {
    float res[4][2];
    for (size_t j = 0; j < n; j += 2) {
        const uint8_t *r0 = (const uint8_t *)codes + j * code_stride, *r1 = j + 1 < n ? r0 + code_stride : r0;
        kivi_pair_i16(bits, q16, M, r0, r1, d, res);
        for (int h = 0; h < M; h++) {
            out[h * out_stride + j] = sq[h] * res[h][0] + bias[h];
            if (j + 1 < n) out[h * out_stride + j + 1] = sq[h] * res[h][1] + bias[h];
        }
    }
}

/* Scores against one KIVI group: q' = scale * q * scale_vec in 16-bit fixed point (per head, error
 * <= max|q'| / 65534 per element), exact integer dots with the bare codes, then
 * scale * dot(q, min_vec) added. Up to 4 query heads share each unpacked row. */
static TGT void avx2_kivi_scores_multi(int bits, const float *q, size_t q_stride, size_t m, const void *codes,
                                       size_t code_stride, const uint16_t *params, size_t n, size_t d, float scale,
                                       float *out, size_t out_stride) {
    if (d > 256 || d % KVK_BLOCK != 0 || (bits != 2 && bits != 4)) {
        kvk_scalar_kivi_scores_multi(bits, q, q_stride, m, codes, code_stride, params, n, d, scale, out, out_stride);
        return;
    }
    float qs[256] __attribute__((aligned(32)));
    int16_t q16[4 * 256] __attribute__((aligned(32)));
    for (size_t h0 = 0; h0 < m; h0 += 4) {
        const size_t hc = m - h0 < 4 ? m - h0 : 4;
        float bias[4] = {0, 0, 0, 0}, sq[4] = {0, 0, 0, 0};
        for (size_t h = 0; h < hc; h++) {
            const float *qh = q + (h0 + h) * q_stride;
            __m256 b = _mm256_setzero_ps();
            for (size_t c = 0; c < d; c += 8) {
                const __m256 x = _mm256_mul_ps(_mm256_loadu_ps(qh + c), _mm256_set1_ps(scale));
                _mm256_store_ps(qs + c, _mm256_mul_ps(x, load_f16x8(params + c)));
                b = _mm256_fmadd_ps(x, load_f16x8(params + d + c), b);
            }
            bias[h] = hsum8(b);
            sq[h] = query_i16(qs, d, 0, q16 + h * d, NULL);
        }
        float *og = out + h0 * out_stride;
#define KG_BITS(B)                                                                                   \
    switch (hc) { /* constant bits and heads, so that each loop is specialized */                    \
    case 1: kivi_group_i16(B, q16, 1, sq, bias, codes, code_stride, n, d, og, out_stride); break;     \
    case 2: kivi_group_i16(B, q16, 2, sq, bias, codes, code_stride, n, d, og, out_stride); break;     \
    case 3: kivi_group_i16(B, q16, 3, sq, bias, codes, code_stride, n, d, og, out_stride); break;     \
    default: kivi_group_i16(B, q16, 4, sq, bias, codes, code_stride, n, d, og, out_stride); break;    \
    }
        if (bits == 2) { KG_BITS(2) } else { KG_BITS(4) }
#undef KG_BITS
    }
}

/* q2_1 value rows, one 32-channel block at a time over all rows (up to 3 heads: 12 accumulators plus
 * the 4 unpacked code vectors fit the 16 registers); the min terms add up as scalars. */
static TGT void avx2_q2_1_weighted_sum_multi(const float *w, size_t w_stride, size_t m, const void *values,
                                             size_t value_stride, size_t n, size_t d, float *out, size_t out_stride) {
    const __m128i mask = _mm_set1_epi8(3);
    for (size_t h0 = 0; h0 < m; h0 += 3) {
        const size_t hc = m - h0 < 3 ? m - h0 : 3;
        for (size_t b = 0; b < d / KVK_BLOCK; b++) {
            __m256 acc[3][4];
            float msum[3] = {0, 0, 0};
            for (size_t h = 0; h < 3; h++)
                for (int k = 0; k < 4; k++) acc[h][k] = _mm256_setzero_ps();
            for (size_t j = 0; j < n; j++) {
                const kvk_block_q2_1 *blk = (const kvk_block_q2_1 *)((const char *)values + j * value_stride) + b;
                const float dd = h2f(blk->d), mm = h2f(blk->m);
                const __m128i raw = _mm_loadl_epi64((const __m128i *)blk->qs);
                const __m256 f0 = codes8(raw, 0, mask), f1 = codes8(raw, 2, mask);
                const __m256 f2 = codes8(raw, 4, mask), f3 = codes8(raw, 6, mask);
                for (size_t h = 0; h < hc; h++) {
                    const float wj = w[(h0 + h) * w_stride + j];
                    const __m256 a = _mm256_set1_ps(wj * dd);
                    acc[h][0] = _mm256_fmadd_ps(a, f0, acc[h][0]);
                    acc[h][1] = _mm256_fmadd_ps(a, f1, acc[h][1]);
                    acc[h][2] = _mm256_fmadd_ps(a, f2, acc[h][2]);
                    acc[h][3] = _mm256_fmadd_ps(a, f3, acc[h][3]);
                    msum[h] += wj * mm;
                }
            }
            for (size_t h = 0; h < hc; h++) {
                float *o = out + (h0 + h) * out_stride + b * KVK_BLOCK;
                const __m256 ms = _mm256_set1_ps(msum[h]);
                for (int k = 0; k < 4; k++)
                    _mm256_storeu_ps(o + 8 * k, _mm256_add_ps(_mm256_loadu_ps(o + 8 * k), _mm256_add_ps(acc[h][k], ms)));
            }
        }
    }
}

const kvk_ops kvk_ops_avx2 = {
    .isa = KVK_ISA_AVX2,
    .dot_f32 = avx2_dot_f32,
    .axpy_f32 = avx2_axpy_f32,
    .scale_f32 = avx2_scale_f32,
    .sum_f32 = avx2_sum_f32,
    .f16_to_f32 = avx2_f16_to_f32,
    .f32_to_f16 = avx2_f32_to_f16,
    .bf16_to_f32 = avx2_bf16_to_f32,
    .f32_to_bf16 = avx2_f32_to_bf16,
    .quantize = avx2_quantize,
    .dequantize = avx2_dequantize,
    .scores = avx2_scores,
    .weighted_sum = avx2_weighted_sum,
    .scores_multi = avx2_scores_multi,
    .weighted_sum_multi = avx2_weighted_sum_multi,
    .kivi_scores_multi = avx2_kivi_scores_multi,
    .matvec = avx2_matvec,
    .matmul = avx2_matmul,
    .quantize_act = avx2_quantize_act,
    .matvec_q8act = avx2_matvec_q8act,
    .matmul_q8act = avx2_matmul_q8act,
    .matmul_q8act_rows4 = avx2_matmul_q8act_rows4,
    .rmsnorm = avx2_rmsnorm,
    .silu_mul = avx2_silu_mul,
    .softmax_unnormalized = avx2_softmax_unnormalized,
    .rope = avx2_rope,
};

#endif
