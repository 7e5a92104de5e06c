/*
 * AVX-512 kernels (F, BW, VL, DQ, VNNI) for the hot paths: attention scores and weighted sums over
 * f32/f16/bf16/q8_0 rows (a few query heads per key row in decode, many in prefill tiles), the
 * softmax exponentials, the int8 (VNNI) Q4_1 matrix-vector and batched products, and the same-run
 * read-bandwidth reference. Every other entry of the table stays the AVX2 one (see
 * kvk_avx512_override); shapes these kernels do not cover are handed to the AVX2 table too.
 */
#include "kvk_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT512
/* Head dims up to KVK_WIDE_MAX_D use the stack-buffered paths (wide scores, q8_0 integer scores,
 * converted value rows). */
#define KVK_WIDE_MAX_D 256

/* Fully unrolls the next loop (clang; compilers without the pragma keep the loop): the reduction
 * trees below keep their pending vectors in registers only when their loops are unrolled. */
#if defined(__clang__)
#define KVK_UNROLL _Pragma("clang loop unroll(full)")
#else
#define KVK_UNROLL
#endif

/* ------------------------------------------------------------ read-bandwidth reference */

static TGT512 float avx512_sum_f32(const float *x, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 48));
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) s += x[i];
    return s;
}

/* ------------------------------------------------------------ masks */

/* The lanes of a 16-row step that lie below a count of `rows` left (all 16 from 16 on). */
INL __mmask16 live_lanes(size_t rows) { return rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1); }
/* The same for the 16 rows from `first` on. */
INL __mmask16 live_lanes_from(size_t rows, size_t first) { return live_lanes(rows > first ? rows - first : 0); }

/* ------------------------------------------------------------ softmax */

/* exp(x) for 16 lanes, the AVX2 exp8 polynomial (Cephes) in 512-bit registers: a few ulp. The
 * power of two is applied by scalef, which also underflows gracefully (to subnormals, then 0) for
 * results below 2^-126, so no split factor is needed; the clamp keeps n finite. */
INL __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-110.0f)), _mm512_set1_ps(89.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

static TGT512 float avx512_softmax_unnormalized(float *x, size_t n, float *shift) {
    __m512 mv = _mm512_set1_ps(*shift), m1 = mv, m2 = mv, m3 = mv; /* four chains: max has latency 4 */
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + i + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + i + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + i + 48));
    }
    mv = _mm512_max_ps(_mm512_max_ps(mv, m1), _mm512_max_ps(m2, m3));
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    if (i < n) mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), live_lanes(n - i), x + i));
    const float mx = _mm512_reduce_max_ps(mv);
    *shift = mx;
    if (mx == -INFINITY) {
        memset(x, 0, n * sizeof(float));
        return 0.0f;
    }
    const __m512 mb = _mm512_set1_ps(mx);
    __m512 sv = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mb));
        _mm512_storeu_ps(x + i, e);
        sv = _mm512_add_ps(sv, e);
    }
    if (i < n) {
        const __mmask16 k = live_lanes(n - i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mb));
        _mm512_mask_storeu_ps(x + i, k, e);
        sv = _mm512_add_ps(sv, _mm512_maskz_mov_ps(k, e));
    }
    return _mm512_reduce_add_ps(sv);
}

/* ------------------------------------------------------------ rows as f32 vectors */

/* The 32 2-bit codes of a q2_1 block (or a KIVI-2 code chunk) at p, 8 bytes, as 32 unsigned bytes in
 * element order: qword k holds the bytes shifted right by 2k, masked to their low 2 bits. */
INL __m256i q2_codes(const char *p) {
    uint64_t u;
    memcpy(&u, p, 8);
    return _mm256_and_si256(_mm256_srlv_epi64(_mm256_set1_epi64x((long long)u), _mm256_setr_epi64x(0, 2, 4, 6)),
                            _mm256_set1_epi8(3));
}

/* Elements [c, c + 16) of a row stored as t, as 16 f32 (c % 16 == 0; for q8_0 the block scale is
 * applied). */
INL __m512 row16(kvk_type t, const char *row, size_t c) {
    switch (t) {
    case KVK_F32: return _mm512_loadu_ps((const float *)row + c);
    case KVK_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c)));
    case KVK_BF16:
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c))), 16));
    case KVK_Q2_1: { /* elements 0-15 of a block are the codes at shifts 0 and 2, 16-31 at 4 and 6 */
        const char *b = row + c / KVK_BLOCK * sizeof(kvk_block_q2_1);
        const __m256i codes = q2_codes(b + 4);
        const __m128i part = c % KVK_BLOCK ? _mm256_extracti128_si256(codes, 1) : _mm256_castsi256_si128(codes);
        uint16_t dh, mh;
        memcpy(&dh, b, 2);
        memcpy(&mh, b + 2, 2);
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(part)), _mm512_set1_ps(_cvtsh_ss(dh)),
                               _mm512_set1_ps(_cvtsh_ss(mh)));
    }
    case KVK_Q4_0:
    case KVK_Q4_1: { /* elements 0-15 of a block in the low nibbles, 16-31 in the high ones */
        const char *b = row + c / KVK_BLOCK * kvk_type_bytes(t, KVK_BLOCK);
        const __m128i raw = _mm_loadu_si128((const __m128i *)(b + (t == KVK_Q4_0 ? 2 : 4)));
        const __m128i nib = _mm_and_si128(c % KVK_BLOCK ? _mm_srli_epi16(raw, 4) : raw, _mm_set1_epi8(0x0F));
        const __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(nib));
        uint16_t dh, mh;
        memcpy(&dh, b, 2);
        if (t == KVK_Q4_0) return _mm512_mul_ps(_mm512_sub_ps(x, _mm512_set1_ps(8.0f)), _mm512_set1_ps(_cvtsh_ss(dh)));
        memcpy(&mh, b + 2, 2);
        return _mm512_fmadd_ps(x, _mm512_set1_ps(_cvtsh_ss(dh)), _mm512_set1_ps(_cvtsh_ss(mh)));
    }
    default: { /* KVK_Q8_0 */
        const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)row + c / KVK_BLOCK;
        const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + c % KVK_BLOCK))));
        return _mm512_mul_ps(q, _mm512_set1_ps(_cvtsh_ss(b->d)));
    }
    }
}

/* The block types the integer attention paths read: q8_0, q4_0, q4_1, q2_1 (the same code with the
 * row loads, the code offset and the zero point of each). */
INL int is_block_type(kvk_type t) { return t == KVK_Q8_0 || t == KVK_Q4_0 || t == KVK_Q4_1 || t == KVK_Q2_1; }
/* Bytes of one block and the offset of its codes. */
INL size_t block_bytes(kvk_type t) {
    return t == KVK_Q8_0 ? sizeof(kvk_block_q8_0) : t == KVK_Q4_0 ? sizeof(kvk_block_q4_0)
         : t == KVK_Q2_1 ? sizeof(kvk_block_q2_1) : sizeof(kvk_block_q4_1);
}
INL size_t code_offset(kvk_type t) { return t == KVK_Q4_1 || t == KVK_Q2_1 ? 4 : 2; }
/* Whether a block holds a minimum besides its scale (x = d q + m). */
INL int has_min(kvk_type t) { return t == KVK_Q4_1 || t == KVK_Q2_1; }

/* The 32 codes of the q4 blocks at r0 and r1 (16 bytes each) as unsigned bytes in element order:
 * elements 0-31 of r0 in the low 256 bits, of r1 in the high ones. */
INL __m512i q4_pair(const char *r0, const char *r1) {
    const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)r0)),
                                              _mm_loadu_si128((const __m128i *)r1), 1);
    const __m256i m = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(t, m), hi = _mm256_and_si256(_mm256_srli_epi16(t, 4), m);
    const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); /* lo0 lo1 hi0 hi1 */
    return _mm512_shuffle_i64x2(x, x, _MM_SHUFFLE(3, 1, 2, 0));               /* lo0 hi0 lo1 hi1 */
}

/* The 32 elements of the block at `codes` as 16-bit integers: q8_0 codes, q4_0 codes - 8, q4_1 and
 * q2_1 codes. */
INL __m512i block_i16(kvk_type t, const char *codes) {
    if (t == KVK_Q8_0) return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)codes));
    if (t == KVK_Q2_1) return _mm512_cvtepu8_epi16(q2_codes(codes));
    const __m128i raw = _mm_loadu_si128((const __m128i *)codes), m = _mm_set1_epi8(0x0F);
    const __m256i x = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
    return t == KVK_Q4_0 ? _mm512_sub_epi16(_mm512_cvtepu8_epi16(x), _mm512_set1_epi16(8)) : _mm512_cvtepu8_epi16(x);
}

/* Prefetches `bytes` bytes at base + offset (one hint per cache line). The address may lie past the
 * caller's rows: a prefetch never faults, and in a cache the next rows of the same head usually
 * follow, so a chunked caller's next call starts warm. */
INL void prefetch_bytes(const char *base, size_t offset, size_t bytes) {
    const uintptr_t p = (uintptr_t)base + offset;
    for (size_t off = 0; off < bytes; off += 64) _mm_prefetch((const char *)(p + off), _MM_HINT_T0);
}

/* 0, stride, 2 stride, ..., 15 stride: the offsets of 16 rows for a gather (in its units). */
INL __m512i lane_offsets(size_t stride) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)stride));
}

/* The f16 scales of the q8_0 blocks at `blk + rows[i]` for the rows in `live`, as f32 (0 for the
 * others): the low half of the dword each block starts with. */
INL __m512 q8_block_scales(const char *blk, __m512i rows, __mmask16 live) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, rows, blk, 1)));
}

/* Elements [c, c + 32) as two vectors (c % 32 == 0): a q8_0 block's scale is converted once. */
INL void row32(kvk_type t, const char *row, size_t c, __m512 *lo, __m512 *hi) {
    if (t == KVK_Q8_0) {
        const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)row + c / KVK_BLOCK;
        const __m512 dv = _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(b->d)));
        const __m128i q0 = _mm_loadu_si128((const __m128i *)b->qs), q1 = _mm_loadu_si128((const __m128i *)(b->qs + 16));
        *lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), dv);
        *hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), dv);
        return;
    }
    *lo = row16(t, row, c);
    *hi = row16(t, row, c + 16);
}

/* ------------------------------------------------------------ scores: 16 keys per reduction */

/* Reduction tree for 16 per-key partial-sum vectors (every lane of vector k belongs to key k).
 * Each fold halves the lanes a key occupies and packs two inputs into one vector with one shuffle
 * t (the shuffle port, which the f16 and int8 conversions also need) and two adds: t + a gives a's
 * lanes, a masked t + b over them b's. The empty asm hides the constant mask from the compiler,
 * which would otherwise build the masked add from a second add and a second shuffle on the shuffle
 * port (one more micro-op per fold: the f16 scores ran ~9 % slower in a C harness); it now emits
 * shuffle, masked blend, add. After four folds lane l holds the total of key bitreverse4(l), which
 * `KEY_ORDER` undoes (the permutation is its own inverse). */
INL __m512 fold_with(__m512 a, __m512 b, __m512 t, __mmask16 b_lanes) {
    __asm__("" : "+r"(b_lanes));
    return _mm512_mask_add_ps(_mm512_add_ps(t, a), b_lanes, t, b);
}
INL __m512 fold_halves(__m512 a, __m512 b) { /* key a -> 256-bit half 0, b -> half 1 */
    return fold_with(a, b, _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 3, 2)), 0xFF00);
}
INL __m512 fold_quarters(__m512 a, __m512 b) { /* 2 + 2 keys -> one key per 128-bit chunk */
    const __m512i idx = _mm512_setr_epi32(4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 24, 25, 26, 27);
    return fold_with(a, b, _mm512_permutex2var_ps(a, idx, b), 0xF0F0);
}
INL __m512 fold_pairs(__m512 a, __m512 b) { /* 4 + 4 keys -> two keys per chunk (lanes 0-1 / 2-3) */
    return fold_with(a, b, _mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 3, 2)), 0xCCCC);
}
INL __m512 fold_last(__m512 a, __m512 b) { /* 8 + 8 keys -> one lane each */
    const __m512i idx = _mm512_setr_epi32(1, 16, 3, 18, 5, 20, 7, 22, 9, 24, 11, 26, 13, 28, 15, 30);
    return fold_with(a, b, _mm512_permutex2var_ps(a, idx, b), 0xAAAA);
}
#define KEY_ORDER _mm512_setr_epi32(0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)

/* Per-key partial sums of M <= 4 queries against one key: acc[h] lanes sum to dot(q_h, key).
 * D == 64 uses the queries preloaded in qv (4 vectors per head); D == 0 reads them from q (any d). */
INL void key_partials(kvk_type t, const char *key, const float *q, size_t q_stride, const __m512 *qv, int M,
                      size_t d, int D, __m512 *acc) {
    if (D == 64) {
        __m512 k0, k1, k2, k3;
        row32(t, key, 0, &k0, &k1);
        row32(t, key, 32, &k2, &k3);
        for (int h = 0; h < M; h++)
            acc[h] = _mm512_fmadd_ps(k3, qv[4 * h + 3],
                                     _mm512_fmadd_ps(k2, qv[4 * h + 2],
                                                     _mm512_fmadd_ps(k1, qv[4 * h + 1], _mm512_mul_ps(k0, qv[4 * h]))));
        return;
    }
    for (int h = 0; h < M; h++) acc[h] = _mm512_setzero_ps();
    for (size_t c = 0; c < d; c += 16) {
        const __m512 k = row16(t, key, c);
        for (int h = 0; h < M; h++) acc[h] = _mm512_fmadd_ps(k, _mm512_loadu_ps(q + h * q_stride + c), acc[h]);
    }
}

/* Scores of M heads against keys [j, j + 16): level by level, so at most one pending vector per level
 * and head is live. */
INL void scores16(kvk_type t, const char *keys, size_t stride, const float *q, size_t q_stride, const __m512 *qv,
                  int M, size_t d, int D, __m512 *res) {
    __m512 l3[2][4];
    KVK_UNROLL for (int half = 0; half < 2; half++) {
        __m512 l2[2][4];
        KVK_UNROLL for (int quad = 0; quad < 2; quad++) {
            __m512 l1[2][4];
            KVK_UNROLL for (int pair = 0; pair < 2; pair++) {
                __m512 a[4], b[4];
                const size_t k = (size_t)(8 * half + 4 * quad + 2 * pair);
                key_partials(t, keys + k * stride, q, q_stride, qv, M, d, D, a);
                key_partials(t, keys + (k + 1) * stride, q, q_stride, qv, M, d, D, b);
                for (int h = 0; h < M; h++) l1[pair][h] = fold_halves(a[h], b[h]);
            }
            for (int h = 0; h < M; h++) l2[quad][h] = fold_quarters(l1[0][h], l1[1][h]);
        }
        for (int h = 0; h < M; h++) l3[half][h] = fold_pairs(l2[0][h], l2[1][h]);
    }
    for (int h = 0; h < M; h++) res[h] = _mm512_permutexvar_ps(KEY_ORDER, fold_last(l3[0][h], l3[1][h]));
}

/* The queries of M heads in registers (qv, 4 vectors per head) when d == 64 and M <= 3; returns
 * whether it loaded them (else scores16 reads them from q). */
INL int scores_preload(const float *q, size_t q_stride, int M, size_t d, __m512 *qv) {
    if (d != 64 || M > 3) return 0;
    for (int h = 0; h < M; h++)
        for (int v = 0; v < 4; v++) qv[4 * h + v] = _mm512_loadu_ps(q + h * q_stride + 16 * v);
    return 1;
}

/* Scores of M heads against the 16 keys at `keys`, scaled, to out_h[0, 16). */
INL void scores_step(kvk_type t, const float *q, size_t q_stride, const __m512 *qv, int preload, int M,
                     const char *keys, size_t key_stride, size_t d, __m512 sv, float *out, size_t out_stride) {
    __m512 res[4];
    if (preload) scores16(t, keys, key_stride, q, q_stride, qv, M, d, 64, res);
    else scores16(t, keys, key_stride, q, q_stride, qv, M, d, 0, res);
    for (int h = 0; h < M; h++) _mm512_storeu_ps(out + h * out_stride, _mm512_mul_ps(sv, res[h]));
}

INL void scores_group(kvk_type t, const float *q, size_t q_stride, int M, const char *keys, size_t key_stride,
                      size_t n16, size_t d, float scale, float *out, size_t out_stride) {
    const __m512 sv = _mm512_set1_ps(scale);
    __m512 qv[12];
    const int preload = scores_preload(q, q_stride, M, d, qv);
    /* no software prefetch: the key rows stream in order and the hardware prefetcher keeps up, while
     * per-row prefetch hints cost more issue slots than they saved (measured; weighted sums keep theirs) */
    for (size_t j = 0; j < n16; j += 16)
        scores_step(t, q, q_stride, qv, preload, M, keys + j * key_stride, key_stride, d, sv, out + j, out_stride);
}

/* ------------------------------------------------------------ q8_0 scores: integer dots (VNNI) */

/* Scores over q8_0 keys for M <= 4 queries with exact integer block dots: each query is rounded to
 * 16-bit fixed point, q ~= s q16 with s = max|q| / 32639 (error <= max|q| / 65278 per element, as
 * the kvk_scores contract allows), and split into signed bytes q16 = 256 hi + lo; key bytes are
 * offset to unsigned (k + 128, one xor) for vpdpbusd, and the offset's share, 128 sum(q16) per
 * block, starts in the accumulator. The 16 keys of a step are transposed to 4-byte columns (one
 * vector per column of 16 keys), so each vpdpbusd adds a column and no score needs a horizontal
 * reduction. After the transpose, vector c of key group g (0: keys 0-3 and 8-11, 1: keys 4-7 and
 * 12-15) holds, per 128-bit chunk, column c, c + 4, c, c + 4 of those keys; q8_prepare lays out each
 * query column pattern to match. */
#define Q8_MAX_BLOCKS (KVK_WIDE_MAX_D / KVK_BLOCK)

typedef struct q8_query {
    int32_t hi[Q8_MAX_BLOCKS][4][16], lo[Q8_MAX_BLOCKS][4][16]; /* per block and column: lane patterns */
    int32_t bias[Q8_MAX_BLOCKS][16]; /* -zero sum(q16) over the block, in the lanes of columns 0-3 */
    float qsum[Q8_MAX_BLOCKS];       /* sum(q) over the block (q4_1's minimum term) */
    float s;                         /* q ~= s q16 */
} q8_query;

/* `zero`: the code of the value 0 once the codes are unsigned bytes (q8_0 128, q4_0 8, q4_1 0). */
static TGT512 void q8_prepare(const float *q, size_t d, int zero, q8_query *p) {
    __m512 iq;
    p->s = kvk_q16_scale(q, d, &iq);
    /* lane l of column pattern c takes dword c (chunks 0, 2) or c + 4 (chunks 1, 3) of the block */
    const __m512i col = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 0, 0, 0, 0, 4, 4, 4, 4);
    for (size_t b = 0; b < d / KVK_BLOCK; b++) {
        __m512i v[2], hi[2], lo[2];
        for (int k = 0; k < 2; k++) kvk_q16_split(q + b * KVK_BLOCK + 16 * k, iq, &v[k], &hi[k], &lo[k]);
        const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(v[0], v[1]));
        p->qsum[b] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_loadu_ps(q + b * KVK_BLOCK), _mm512_loadu_ps(q + b * KVK_BLOCK + 16)));
        /* the block's 32 bytes as 8 dwords in lanes 0-7 */
        const __m512i hd = _mm512_castsi256_si512(_mm256_set_m128i(_mm512_cvtepi32_epi8(hi[1]), _mm512_cvtepi32_epi8(hi[0])));
        const __m512i ld = _mm512_castsi256_si512(_mm256_set_m128i(_mm512_cvtepi32_epi8(lo[1]), _mm512_cvtepi32_epi8(lo[0])));
        for (int c = 0; c < 4; c++) {
            const __m512i idx = _mm512_add_epi32(col, _mm512_set1_epi32(c));
            _mm512_storeu_si512(p->hi[b][c], _mm512_permutexvar_epi32(idx, hd));
            _mm512_storeu_si512(p->lo[b][c], _mm512_permutexvar_epi32(idx, ld));
        }
        _mm512_storeu_si512(p->bias[b], _mm512_maskz_set1_epi32(0x0F0F, -zero * sum));
    }
}

/* Sums chunks (0,1) and (2,3) of a with those of b: keys 0-3 | 4-7 | 8-11 | 12-15 in order. */
INL __m512i q8_fold(__m512i a, __m512i b) {
    const __m512i idx = _mm512_setr_epi32(4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15, 24, 25, 26, 27);
    const __m512i t = _mm512_permutex2var_epi32(a, idx, b);
    return _mm512_mask_add_epi32(_mm512_add_epi32(t, a), 0xF0F0, t, b);
}

/* The same for q4_0 / q4_1 / q2_1 keys: their codes are the unsigned bytes (no xor), zero point 8 /
 * 0 / 0; the minimum of q4_1 and q2_1 adds m sum(q) per block, in f32. KIVI (constant): rows of bare
 * codes (4 bits for T = q4_1, 2 for q2_1) with no per-row scale or minimum; the caller folds the
 * group's channel scales into q and adds its minimums' share. */
INL void scores_q8_group(kvk_type T, int KIVI, const float *q, size_t q_stride, int M, const char *keys, size_t key_stride,
                         size_t n16, size_t d, float scale, float *out, size_t out_stride) {
    q8_query qp[4];
    for (int h = 0; h < M; h++) q8_prepare(q + h * q_stride, d, T == KVK_Q8_0 ? 128 : T == KVK_Q4_0 ? 8 : 0, &qp[h]);
    const size_t nb = d / KVK_BLOCK, bs = KIVI ? (T == KVK_Q2_1 ? 8 : 16) : block_bytes(T), co = KIVI ? 0 : code_offset(T);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i rows = lane_offsets(key_stride);
    for (size_t j = 0; j < n16; j += 16) {
        const char *base = keys + j * key_stride;
        /* the 16 rows 64 rows ahead (~4 KB at d = 64; 32/96/128 rows measured slower): the
         * column-wise reads do not keep the hardware prefetcher ahead on their own */
        prefetch_bytes(base, 64 * key_stride, 16 * key_stride);
        __m512 res[4], mres[4];
        for (int h = 0; h < M; h++) res[h] = mres[h] = _mm512_setzero_ps();
        for (size_t b = 0; b < nb; b++) {
            const char *blk = base + b * bs;
            const __m512 dk = KIVI ? _mm512_set1_ps(1.0f) : q8_block_scales(blk, rows, 0xFFFF);
            __m512i x[8], a[8], v[2][4];
            KVK_UNROLL for (int i = 0; i < 8; i++) {
                const char *r0 = blk + co + (size_t)i * key_stride, *r1 = blk + co + (size_t)(i + 8) * key_stride;
                x[i] = T == KVK_Q8_0 ? _mm512_xor_si512(
                    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)r0)),
                                       _mm256_loadu_si256((const __m256i *)r1), 1),
                    flip) : T == KVK_Q2_1 ? _mm512_inserti64x4(_mm512_castsi256_si512(q2_codes(r0)), q2_codes(r1), 1)
                          : q4_pair(r0, r1);
            }
            if (has_min(T) && !KIVI) {
                const __m512 mk = q8_block_scales(blk + 2, rows, 0xFFFF);
                for (int h = 0; h < M; h++) mres[h] = _mm512_fmadd_ps(mk, _mm512_set1_ps(qp[h].qsum[b]), mres[h]);
            }
            KVK_UNROLL for (int i = 0; i < 4; i++) {
                a[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
                a[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
            }
            KVK_UNROLL for (int g = 0; g < 2; g++) {
                v[g][0] = _mm512_unpacklo_epi64(a[4 * g], a[4 * g + 2]);
                v[g][1] = _mm512_unpackhi_epi64(a[4 * g], a[4 * g + 2]);
                v[g][2] = _mm512_unpacklo_epi64(a[4 * g + 1], a[4 * g + 3]);
                v[g][3] = _mm512_unpackhi_epi64(a[4 * g + 1], a[4 * g + 3]);
            }
            for (int h = 0; h < M; h++) {
                __m512i t[2];
                KVK_UNROLL for (int g = 0; g < 2; g++) {
                    __m512i hi = _mm512_setzero_si512(), lo = _mm512_loadu_si512(qp[h].bias[b]);
                    KVK_UNROLL for (int c = 0; c < 4; c++) {
                        hi = _mm512_dpbusd_epi32(hi, v[g][c], _mm512_loadu_si512(qp[h].hi[b][c]));
                        lo = _mm512_dpbusd_epi32(lo, v[g][c], _mm512_loadu_si512(qp[h].lo[b][c]));
                    }
                    t[g] = _mm512_add_epi32(_mm512_slli_epi32(hi, 8), lo);
                }
                res[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q8_fold(t[0], t[1])), dk, res[h]);
            }
        }
        for (int h = 0; h < M; h++)
            _mm512_storeu_ps(out + h * out_stride + j,
                             _mm512_fmadd_ps(_mm512_set1_ps(scale * qp[h].s), res[h], _mm512_mul_ps(_mm512_set1_ps(scale), mres[h])));
    }
}

/* One out-of-line instance per (row type, head count), with d == 64 as its own constant case: every
 * per-head array of the reduction then lives in registers. */
typedef void (*scores_group_fn)(const float *q, size_t q_stride, const char *keys, size_t key_stride, size_t n16,
                                size_t d, float scale, float *out, size_t out_stride);
#define SCORES_GROUP_FN(T, M)                                                                                   \
    static TGT512 __attribute__((noinline)) void scores_group_##T##_##M(                                     \
        const float *q, size_t q_stride, const char *keys, size_t key_stride, size_t n16, size_t d, float scale, \
        float *out, size_t out_stride) {                                                                      \
        if (is_block_type(T) && d == 64) scores_q8_group(T, 0, q, q_stride, M, keys, key_stride, n16, 64, scale, out, out_stride); \
        else if (is_block_type(T) && d <= KVK_WIDE_MAX_D)                                                      \
            scores_q8_group(T, 0, q, q_stride, M, keys, key_stride, n16, d, scale, out, out_stride);            \
        else if (d == 64) scores_group(T, q, q_stride, M, keys, key_stride, n16, 64, scale, out, out_stride);   \
        else scores_group(T, q, q_stride, M, keys, key_stride, n16, d, scale, out, out_stride);                 \
    }
#define SCORES_GROUP_FNS(T) SCORES_GROUP_FN(T, 1) SCORES_GROUP_FN(T, 2) SCORES_GROUP_FN(T, 3) SCORES_GROUP_FN(T, 4)
SCORES_GROUP_FNS(KVK_F32)
SCORES_GROUP_FNS(KVK_F16)
SCORES_GROUP_FNS(KVK_BF16)
SCORES_GROUP_FNS(KVK_Q8_0)
SCORES_GROUP_FNS(KVK_Q4_0)
SCORES_GROUP_FNS(KVK_Q4_1)
SCORES_GROUP_FNS(KVK_Q2_1)
#define SCORES_GROUP_ROW(T) {scores_group_##T##_1, scores_group_##T##_2, scores_group_##T##_3, scores_group_##T##_4}
static const scores_group_fn scores_group_fns[7][4] = {SCORES_GROUP_ROW(KVK_F32), SCORES_GROUP_ROW(KVK_F16),
                                                       SCORES_GROUP_ROW(KVK_BF16), SCORES_GROUP_ROW(KVK_Q8_0),
                                                       SCORES_GROUP_ROW(KVK_Q4_0), SCORES_GROUP_ROW(KVK_Q4_1),
                                                       SCORES_GROUP_ROW(KVK_Q2_1)};

/* Index of a row type in the per-type tables (f32, f16, bf16, q8_0, q4_0, q4_1, q2_1). */
static inline int type_slot(kvk_type t) {
    return t == KVK_F32 ? 0 : t == KVK_F16 ? 1 : t == KVK_BF16 ? 2 : t == KVK_Q8_0 ? 3 : t == KVK_Q4_0 ? 4
         : t == KVK_Q4_1 ? 5 : 6;
}
/* The row types the AVX-512 attention kernels read. */
static inline int avx512_row_type(kvk_type t) {
    return t == KVK_F32 || t == KVK_F16 || t == KVK_BF16 || t == KVK_Q8_0 || t == KVK_Q4_0 || t == KVK_Q4_1 ||
           t == KVK_Q2_1;
}

/* KIVI key groups: the group's channel scales folded into the queries (q' = q scale_c), integer
 * scores of q' against the bare codes, then the minimums' share scale dot(q, min) added. One
 * out-of-line instance per (bits, head count). */
typedef void (*kivi_group_fn)(const float *q, size_t q_stride, const char *codes, size_t code_stride, size_t n16,
                              size_t d, float scale, float *out, size_t out_stride);
#define KIVI_GROUP_FN(T, M)                                                                                     \
    static TGT512 __attribute__((noinline)) void kivi_group_##T##_##M(                                        \
        const float *q, size_t q_stride, const char *codes, size_t code_stride, size_t n16, size_t d, float scale, \
        float *out, size_t out_stride) {                                                                      \
        if (d == 64) scores_q8_group(T, 1, q, q_stride, M, codes, code_stride, n16, 64, scale, out, out_stride);   \
        else scores_q8_group(T, 1, q, q_stride, M, codes, code_stride, n16, d, scale, out, out_stride);            \
    }
KIVI_GROUP_FN(KVK_Q2_1, 1) KIVI_GROUP_FN(KVK_Q2_1, 2) KIVI_GROUP_FN(KVK_Q2_1, 3) KIVI_GROUP_FN(KVK_Q2_1, 4)
KIVI_GROUP_FN(KVK_Q4_1, 1) KIVI_GROUP_FN(KVK_Q4_1, 2) KIVI_GROUP_FN(KVK_Q4_1, 3) KIVI_GROUP_FN(KVK_Q4_1, 4)
static const kivi_group_fn kivi_group_fns[2][4] = {
    {kivi_group_KVK_Q2_1_1, kivi_group_KVK_Q2_1_2, kivi_group_KVK_Q2_1_3, kivi_group_KVK_Q2_1_4},
    {kivi_group_KVK_Q4_1_1, kivi_group_KVK_Q4_1_2, kivi_group_KVK_Q4_1_3, kivi_group_KVK_Q4_1_4}};

static TGT512 void avx512_kivi_scores_multi(int bits, const float *q, size_t q_stride, size_t m, const void *codes,
                                            size_t code_stride, const uint16_t *params, size_t n, size_t d, float scale,
                                            float *out, size_t out_stride) {
    const size_t n16 = n & ~(size_t)15;
    if (n16 == 0 || d % KVK_BLOCK != 0 || d > KVK_WIDE_MAX_D || (bits != 2 && bits != 4)) {
        kvk_ops_avx2.kivi_scores_multi(bits, q, q_stride, m, codes, code_stride, params, n, d, scale, out, out_stride);
        return;
    }
    float qs[4 * KVK_WIDE_MAX_D] __attribute__((aligned(64)));
    for (size_t h0 = 0; h0 < m; h0 += 4) {
        const int g = m - h0 < 4 ? (int)(m - h0) : 4;
        float bias[4];
        for (int h = 0; h < g; h++) {
            const float *qh = q + (h0 + h) * q_stride;
            __m512 b = _mm512_setzero_ps();
            for (size_t c = 0; c < d; c += 16) {
                const __m512 x = _mm512_loadu_ps(qh + c);
                _mm512_store_ps(qs + h * d + c,
                                _mm512_mul_ps(x, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(params + c)))));
                b = _mm512_fmadd_ps(x, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(params + d + c))), b);
            }
            bias[h] = scale * _mm512_reduce_add_ps(b);
        }
        float *og = out + h0 * out_stride;
        kivi_group_fns[bits == 2 ? 0 : 1][g - 1](qs, d, (const char *)codes, code_stride, n16, d, scale, og, out_stride);
        for (int h = 0; h < g; h++)
            for (size_t j = 0; j < n16; j += 16)
                _mm512_storeu_ps(og + h * out_stride + j, _mm512_add_ps(_mm512_loadu_ps(og + h * out_stride + j),
                                                                        _mm512_set1_ps(bias[h])));
    }
    if (n16 < n)
        kvk_ops_avx2.kivi_scores_multi(bits, q, q_stride, m, (const char *)codes + n16 * code_stride, code_stride, params,
                                       n - n16, d, scale, out + n16, out_stride);
}

/* Many queries (prefill tiles): the keys of a 32-key block are converted and transposed once into
 * kt[c][32] (f32), then every query row runs a plain register-blocked product over them (6 rows x 32
 * keys per step, the query element broadcast from memory), with no per-score reduction. */

INL void wide_rows(const float *q, size_t q_stride, int R, const float *kt, size_t d, float scale, float *out,
                   size_t out_stride, __mmask16 m0, __mmask16 m1) {
    __m512 acc[6][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t c = 0; c < d; c++) {
        const __m512 k0 = _mm512_loadu_ps(kt + 32 * c), k1 = _mm512_loadu_ps(kt + 32 * c + 16);
        for (int r = 0; r < R; r++) {
            const __m512 qb = _mm512_set1_ps(q[r * q_stride + c]);
            acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
        }
    }
    const __m512 sv = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++) {
        _mm512_mask_storeu_ps(out + r * out_stride, m0, _mm512_mul_ps(sv, acc[r][0]));
        _mm512_mask_storeu_ps(out + r * out_stride + 16, m1, _mm512_mul_ps(sv, acc[r][1]));
    }
}

INL void scores_wide(kvk_type t, const float *q, size_t q_stride, size_t m, const char *keys, size_t key_stride,
                     size_t n, size_t d, float scale, float *out, size_t out_stride) {
    float rows[32 * KVK_WIDE_MAX_D] __attribute__((aligned(64)));
    float kt[KVK_WIDE_MAX_D * 32] __attribute__((aligned(64)));
    const __m512i idx = lane_offsets(d);
    for (size_t j = 0; j < n; j += 32) {
        const size_t nk = n - j < 32 ? n - j : 32;
        for (size_t k = 0; k < 32; k++) {
            float *dst = rows + k * d;
            if (k < nk) {
                const char *key = keys + (j + k) * key_stride;
                for (size_t c = 0; c < d; c += 16) _mm512_store_ps(dst + c, row16(t, key, c));
            } else {
                memset(dst, 0, d * sizeof(float));
            }
        }
        for (size_t c = 0; c < d; c++) {
            _mm512_store_ps(kt + 32 * c, _mm512_i32gather_ps(idx, rows + c, 4));
            _mm512_store_ps(kt + 32 * c + 16, _mm512_i32gather_ps(idx, rows + 16 * d + c, 4));
        }
        const __mmask16 m0 = live_lanes(nk), m1 = live_lanes_from(nk, 16);
        size_t h = 0;
        for (; h + 6 <= m; h += 6)
            wide_rows(q + h * q_stride, q_stride, 6, kt, d, scale, out + h * out_stride + j, out_stride, m0, m1);
        switch (m - h) { /* constant R per call: accumulators stay in registers */
        case 5: wide_rows(q + h * q_stride, q_stride, 5, kt, d, scale, out + h * out_stride + j, out_stride, m0, m1); break;
        case 4: wide_rows(q + h * q_stride, q_stride, 4, kt, d, scale, out + h * out_stride + j, out_stride, m0, m1); break;
        case 3: wide_rows(q + h * q_stride, q_stride, 3, kt, d, scale, out + h * out_stride + j, out_stride, m0, m1); break;
        case 2: wide_rows(q + h * q_stride, q_stride, 2, kt, d, scale, out + h * out_stride + j, out_stride, m0, m1); break;
        case 1: wide_rows(q + h * q_stride, q_stride, 1, kt, d, scale, out + h * out_stride + j, out_stride, m0, m1); break;
        default: break;
        }
    }
}

static TGT512 void avx512_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys,
                                       size_t key_stride, size_t n, size_t d, float scale, float *out,
                                       size_t out_stride) {
    const int supported = avx512_row_type(t) && d % 16 == 0 && d > 0;
    if (supported && m >= KVK_WIDE_MIN_M && d <= KVK_WIDE_MAX_D) {
        switch (t) { /* instantiated per type so the row conversion is inlined */
        case KVK_F32: scores_wide(KVK_F32, q, q_stride, m, (const char *)keys, key_stride, n, d, scale, out, out_stride); break;
        case KVK_F16: scores_wide(KVK_F16, q, q_stride, m, (const char *)keys, key_stride, n, d, scale, out, out_stride); break;
        case KVK_BF16: scores_wide(KVK_BF16, q, q_stride, m, (const char *)keys, key_stride, n, d, scale, out, out_stride); break;
        case KVK_Q4_0: scores_wide(KVK_Q4_0, q, q_stride, m, (const char *)keys, key_stride, n, d, scale, out, out_stride); break;
        case KVK_Q4_1: scores_wide(KVK_Q4_1, q, q_stride, m, (const char *)keys, key_stride, n, d, scale, out, out_stride); break;
        case KVK_Q2_1: scores_wide(KVK_Q2_1, q, q_stride, m, (const char *)keys, key_stride, n, d, scale, out, out_stride); break;
        default: scores_wide(KVK_Q8_0, q, q_stride, m, (const char *)keys, key_stride, n, d, scale, out, out_stride); break;
        }
        return;
    }
    const size_t n16 = supported ? n & ~(size_t)15 : 0;
    for (size_t h0 = 0; h0 < m && n16 > 0; h0 += 4) {
        const int g = m - h0 < 4 ? (int)(m - h0) : 4;
        scores_group_fns[type_slot(t)][g - 1](q + h0 * q_stride, q_stride, (const char *)keys, key_stride, n16, d,
                                              scale, out + h0 * out_stride, out_stride);
    }
    if (n16 < n)
        kvk_ops_avx2.scores_multi(t, q, q_stride, m, (const char *)keys + n16 * key_stride, key_stride, n - n16, d,
                                  scale, out + n16, out_stride);
}

static TGT512 void avx512_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                                 float scale, float *out) {
    avx512_scores_multi(t, q, 0, 1, keys, key_stride, n, d, scale, out, 0);
}

/* ------------------------------------------------------------ weighted sums */

/* out_h[c0, c0 + 16 V) += sum_j w_h[j] row_j[c0, ...) for M <= 4 heads and rows [0, n): the
 * accumulators stay in registers for the whole pass. */
INL void wsum_load(const float *out, size_t out_stride, int M, size_t c0, int V, __m512 (*acc)[4]) {
    for (int h = 0; h < M; h++)
        for (int v = 0; v < V; v++) acc[h][v] = _mm512_loadu_ps(out + h * out_stride + c0 + 16 * v);
}
INL void wsum_store(float *out, size_t out_stride, int M, size_t c0, int V, __m512 (*acc)[4]) {
    for (int h = 0; h < M; h++)
        for (int v = 0; v < V; v++) _mm512_storeu_ps(out + h * out_stride + c0 + 16 * v, acc[h][v]);
}

/* acc_h += w_h[j] row_j[c0, c0 + 16 V) for row j of `values` (f32, f16 or bf16), first prefetching
 * row j + pd's columns when pd > 0. */
INL void wsum_row(kvk_type t, const float *w, size_t w_stride, int M, const char *values, size_t stride, size_t j,
                  size_t c0, int V, size_t pd, __m512 (*acc)[4]) {
    const char *row = values + j * stride;
    __m512 x[4];
    if (pd) prefetch_bytes(row, pd * stride + kvk_type_bytes(t, c0), kvk_type_bytes(t, 16 * (size_t)V));
    if (V == 4) {
        row32(t, row, c0, &x[0], &x[1]);
        row32(t, row, c0 + 32, &x[2], &x[3]);
    } else {
        x[0] = row16(t, row, c0);
    }
    for (int h = 0; h < M; h++) {
        const __m512 wv = _mm512_set1_ps(w[h * w_stride + j]);
        for (int v = 0; v < V; v++) acc[h][v] = _mm512_fmadd_ps(wv, x[v], acc[h][v]);
    }
}

INL void wsum_chunk(kvk_type t, const float *w, size_t w_stride, int M, const char *values, size_t stride, size_t n,
                    size_t c0, int V, int prefetch, float *out, size_t out_stride) {
    __m512 acc[4][4];
    wsum_load(out, out_stride, M, c0, V, acc);
    const size_t pd = prefetch ? prefetch_rows(stride, 16) : 0;
    for (size_t j = 0; j < n; j++) wsum_row(t, w, w_stride, M, values, stride, j, c0, V, pd, acc);
    wsum_store(out, out_stride, M, c0, V, acc);
}

/* q8_0 rows: out_h[32 b0, 32 (b0 + NB)) += sum_j w_h[j] row_j for M <= 4 heads and NB <= 2 blocks,
 * in integer arithmetic. Per 32 rows and head, the weights times the rows' block scales, w_h[j] d_j,b,
 * are rounded to 16-bit fixed point against their largest magnitude (error <= that / 65534 per weight,
 * an eighth of the int8 values' own rounding at most); two rows are widened to interleaved 16-bit
 * pairs so that one vpdpwssd adds both rows for 16 columns, and each 32 rows' int32 sums are scaled
 * into f32 accumulators. Per row of two blocks this is 2 widenings, 2 interleaves and 2 M products
 * (the f32 path needed 4 widenings, 4 conversions and 4 M multiply-adds). */
typedef struct q8_weights {
    int32_t w[4][2][16]; /* per head and block: row pairs as (16-bit low row, 16-bit high row) */
    float s[16];         /* head h: weight = integer * s[4 h] */
} q8_weights;

/* Dword of q8_weights.w holding rows 2p, 2p + 1 of a group (the order _mm512_packs_epi32 leaves). */
static inline size_t q8_pair_slot(size_t p) { return 4 * ((p & 7) >> 1) + (p & 1) + ((p >> 3) << 1); }

/* The maxima of four vectors, each in every lane of its own 128-bit chunk (one tree for all four). */
INL __m512 max4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_max_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 cd = _mm512_max_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 m = _mm512_max_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
    m = _mm512_max_ps(m, _mm512_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm512_max_ps(m, _mm512_permute_ps(m, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* The block scales of rows [0, nr) (nr <= 32) at base, as f32 per block and 16 rows (0 past nr);
 * `bs` bytes per block, the scale at `offset` in it (q4_1's minimum: offset 2). */
INL void wsum_q8_scales(const char *base, size_t stride, size_t bs, size_t offset, __m512i rows, size_t nr, int NB,
                        float (*dk)[2][16]) {
    const __mmask16 m[2] = {live_lanes(nr), live_lanes_from(nr, 16)};
    for (int b = 0; b < NB; b++)
        for (int k = 0; k < 2; k++)
            _mm512_store_ps(dk[b][k], q8_block_scales(base + 16 * k * stride + b * bs + offset, rows, m[k]));
}

INL void wsum_q8_weights(const float *w, size_t w_stride, int M, float (*dks)[2][16], size_t nr, int NB, q8_weights *g) {
    const __mmask16 m[2] = {live_lanes(nr), live_lanes_from(nr, 16)};
    __m512 dk[2][2], x[4][2][2], mx[4];
    for (int b = 0; b < NB; b++)
        for (int k = 0; k < 2; k++) dk[b][k] = _mm512_load_ps(dks[b][k]);
    for (int h = 0; h < 4; h++) {
        mx[h] = _mm512_setzero_ps();
        for (int b = 0; b < NB && h < M; b++)
            for (int k = 0; k < 2; k++) {
                x[h][b][k] = _mm512_mul_ps(_mm512_maskz_loadu_ps(m[k], w + h * w_stride + 16 * k), dk[b][k]);
                mx[h] = _mm512_range_ps(mx[h], x[h][b][k], 0x0B); /* max(|mx|, |x|) */
            }
    }
    const __m512 amax = max4(mx[0], mx[1], mx[2], mx[3]);
    const __m512 inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ),
                                           _mm512_set1_ps(32767.0f), amax);
    _mm512_storeu_ps(g->s, _mm512_mul_ps(amax, _mm512_set1_ps(1.0f / 32767.0f)));
    for (int h = 0; h < M; h++) {
        const __m512 ih = _mm512_permutexvar_ps(_mm512_set1_epi32(4 * h), inv);
        for (int b = 0; b < NB; b++)
            _mm512_storeu_si512(g->w[h][b], _mm512_packs_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(x[h][b][0], ih)),
                                                               _mm512_cvtps_epi32(_mm512_mul_ps(x[h][b][1], ih))));
    }
}

/* For q4_0 / q4_1 rows the same, over their codes as 16-bit integers (q4_0 minus its zero point 8);
 * q4_1's minimum adds sum_j w_h[j] m_j,b to every column of block b, in f32. */
INL void wsum_q8_chunk(kvk_type T, const float *w, size_t w_stride, int M, const char *values, size_t stride, size_t n,
                       size_t b0, int NB, int prefetch, float *out, size_t out_stride) {
    /* accumulator k of (head, block) holds columns 8c + 4k + (0..3) in its 128-bit chunk c: the
     * order the 16-bit interleaves leave */
    __m512 acc[4][2][2];
    q8_weights g[2];
    float dk[2][2][2][16] __attribute__((aligned(64))); /* block scales, two groups ahead of the rows */
    for (int h = 0; h < M; h++)
        for (int b = 0; b < NB; b++) acc[h][b][0] = acc[h][b][1] = _mm512_setzero_ps();
    const __m512i rows = lane_offsets(stride);
    const size_t bs = block_bytes(T), co = code_offset(T);
    const size_t pd = prefetch_rows(stride, 16), rb = (size_t)NB * bs;
    const size_t first = b0 * bs;
    __m512 macc[4][2]; /* q4_1: sum_j w_h[j] m_j,b in lanes */
    for (int h = 0; h < M; h++) macc[h][0] = macc[h][1] = _mm512_setzero_ps();
    if (n > 0) {
        wsum_q8_scales(values + first, stride, bs, 0, rows, n, NB, dk[0]);
        wsum_q8_weights(w, w_stride, M, dk[0], n, NB, &g[0]);
    }
    if (n > 32) wsum_q8_scales(values + 32 * stride + first, stride, bs, 0, rows, n - 32, NB, dk[1]);
    for (size_t j0 = 0, cur = 0; j0 < n; j0 += 32, cur ^= 1) {
        const size_t nr = n - j0 < 32 ? n - j0 : 32;
        const char *base = values + j0 * stride + first;
        /* the next group's weights and the scales of the one after: the gathers' latency and the
         * weights' dependency chain overlap this group's rows */
        if (has_min(T)) {
            float mk[2][2][16] __attribute__((aligned(64)));
            wsum_q8_scales(base, stride, bs, 2, rows, nr, NB, mk);
            const __mmask16 live[2] = {live_lanes(nr), live_lanes_from(nr, 16)};
            for (int h = 0; h < M; h++)
                for (int b = 0; b < NB; b++)
                    for (int k = 0; k < 2; k++)
                        macc[h][b] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(live[k], w + h * w_stride + j0 + 16 * k),
                                                     _mm512_load_ps(mk[b][k]), macc[h][b]);
        }
        if (j0 + 32 < n) wsum_q8_weights(w + j0 + 32, w_stride, M, dk[cur ^ 1], n - j0 - 32, NB, &g[cur ^ 1]);
        if (j0 + 64 < n) wsum_q8_scales(base + 64 * stride, stride, bs, 0, rows, n - j0 - 64, NB, dk[cur]);
        __m512i isum[4][2][2];
        for (int h = 0; h < M; h++)
            for (int b = 0; b < NB; b++) isum[h][b][0] = isum[h][b][1] = _mm512_setzero_si512();
        for (size_t p = 0; 2 * p < nr; p++) {
            const char *r0 = base + 2 * p * stride, *r1 = 2 * p + 1 < nr ? r0 + stride : r0; /* odd end: weight 0 */
            if (prefetch) {
                prefetch_bytes(values, (j0 + 2 * p + pd) * stride + first, rb);
                prefetch_bytes(values, (j0 + 2 * p + 1 + pd) * stride + first, rb);
            }
            const size_t slot = q8_pair_slot(p);
            KVK_UNROLL for (int b = 0; b < NB; b++) {
                const size_t off = b * bs + co;
                const __m512i x0 = block_i16(T, r0 + off), x1 = block_i16(T, r1 + off);
                const __m512i lo = _mm512_unpacklo_epi16(x0, x1), hi = _mm512_unpackhi_epi16(x0, x1);
                for (int h = 0; h < M; h++) {
                    const __m512i wv = _mm512_set1_epi32(g[cur].w[h][b][slot]);
                    isum[h][b][0] = _mm512_dpwssd_epi32(isum[h][b][0], lo, wv);
                    isum[h][b][1] = _mm512_dpwssd_epi32(isum[h][b][1], hi, wv);
                }
            }
        }
        for (int h = 0; h < M; h++) {
            const __m512 s = _mm512_set1_ps(g[cur].s[4 * h]);
            for (int b = 0; b < NB; b++)
                for (int k = 0; k < 2; k++) acc[h][b][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[h][b][k]), s, acc[h][b][k]);
        }
    }
    /* back to column order: columns 0-15 are chunks lo0 hi0 lo1 hi1, columns 16-31 lo2 hi2 lo3 hi3 */
    const __m512i i0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i i1 = _mm512_add_epi32(i0, _mm512_set1_epi32(8));
    for (int h = 0; h < M; h++)
        for (int b = 0; b < NB; b++) {
            float *o = out + h * out_stride + 32 * (b0 + b);
            const __m512 mv = _mm512_set1_ps(has_min(T) ? _mm512_reduce_add_ps(macc[h][b]) : 0.0f);
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(o), mv),
                                              _mm512_permutex2var_ps(acc[h][b][0], i0, acc[h][b][1])));
            _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(o + 16), mv),
                                                   _mm512_permutex2var_ps(acc[h][b][0], i1, acc[h][b][1])));
        }
}

/* Rows in groups of 64 (they stay in L1 while every 64-element chunk of the head dimension passes). */
INL void wsum_group(kvk_type t, const float *w, size_t w_stride, int M, const char *values, size_t stride, size_t n,
                    size_t d, float *out, size_t out_stride) {
    if (d == 64) { /* one pass with every accumulator in registers, prefetching ahead */
        if (is_block_type(t)) wsum_q8_chunk(t, w, w_stride, M, values, stride, n, 0, 2, 1, out, out_stride);
        else wsum_chunk(t, w, w_stride, M, values, stride, n, 0, 4, 1, out, out_stride);
        return;
    }
    const size_t group = 64;
    for (size_t j0 = 0; j0 < n; j0 += group) {
        const size_t rows = n - j0 < group ? n - j0 : group;
        const char *v = values + j0 * stride;
        size_t c = 0;
        if (is_block_type(t)) { /* d % 32 == 0: two blocks per pass, then the odd one */
            for (; c + 64 <= d; c += 64) wsum_q8_chunk(t, w + j0, w_stride, M, v, stride, rows, c / 32, 2, 0, out, out_stride);
            if (c < d) wsum_q8_chunk(t, w + j0, w_stride, M, v, stride, rows, c / 32, 1, 0, out, out_stride);
            continue;
        }
        for (; c + 64 <= d; c += 64) wsum_chunk(t, w + j0, w_stride, M, v, stride, rows, c, 4, 0, out, out_stride);
        for (; c < d; c += 16) wsum_chunk(t, w + j0, w_stride, M, v, stride, rows, c, 1, 0, out, out_stride);
    }
}

static TGT512 void avx512_weighted_sum_multi(kvk_type t, const float *w, size_t w_stride, size_t m,
                                             const void *values, size_t value_stride, size_t n, size_t d, float *out,
                                             size_t out_stride) {
    const int supported = avx512_row_type(t) && d % 16 == 0;
    if (!supported) {
        kvk_ops_avx2.weighted_sum_multi(t, w, w_stride, m, values, value_stride, n, d, out, out_stride);
        return;
    }
    if (m > 4 && t != KVK_F32 && d <= KVK_WIDE_MAX_D) {
        /* many heads (prefill): convert 32 rows at a time to f32 once, then every head group reads
         * them from L1 as f32 */
        float rows[32 * KVK_WIDE_MAX_D] __attribute__((aligned(64)));
        for (size_t j = 0; j < n; j += 32) {
            const size_t nr = n - j < 32 ? n - j : 32;
            for (size_t k = 0; k < nr; k++) {
                const char *row = (const char *)values + (j + k) * value_stride;
                for (size_t c = 0; c < d; c += 16) _mm512_store_ps(rows + k * d + c, row16(t, row, c));
            }
            avx512_weighted_sum_multi(KVK_F32, w + j, w_stride, m, rows, d * sizeof(float), nr, d, out, out_stride);
        }
        return;
    }
    for (size_t h0 = 0; h0 < m; h0 += 4) {
        const int g = m - h0 < 4 ? (int)(m - h0) : 4;
        const float *wg = w + h0 * w_stride;
        float *og = out + h0 * out_stride;
#define WS_M(T)                                                                                         \
    switch (g) {                                                                                        \
    case 1: wsum_group(T, wg, w_stride, 1, (const char *)values, value_stride, n, d, og, out_stride); break; \
    case 2: wsum_group(T, wg, w_stride, 2, (const char *)values, value_stride, n, d, og, out_stride); break; \
    case 3: wsum_group(T, wg, w_stride, 3, (const char *)values, value_stride, n, d, og, out_stride); break; \
    default: wsum_group(T, wg, w_stride, 4, (const char *)values, value_stride, n, d, og, out_stride); break; \
    }
        switch (t) {
        case KVK_F32: WS_M(KVK_F32) break;
        case KVK_F16: WS_M(KVK_F16) break;
        case KVK_BF16: WS_M(KVK_BF16) break;
        case KVK_Q4_0: WS_M(KVK_Q4_0) break;
        case KVK_Q4_1: WS_M(KVK_Q4_1) break;
        case KVK_Q2_1: WS_M(KVK_Q2_1) break;
        default: WS_M(KVK_Q8_0) break;
        }
#undef WS_M
    }
}

static TGT512 void avx512_weighted_sum(kvk_type t, const float *w, const void *values, size_t value_stride, size_t n,
                                       size_t d, float *out) {
    avx512_weighted_sum_multi(t, w, 0, 1, values, value_stride, n, d, out, 0);
}

/* ------------------------------------------------------------ pipelined decode pass */

/* Head dim 64: per 16 keys, one scores step, then the next 16 value rows of the other chunk (either
 * runs alone once the other is done). The scores keep both vector ports busy while the value
 * rows (prefetched as in wsum_chunk) arrive, which the two separate passes cannot overlap: at 16K
 * tokens the value pass alone runs at about the core's read bandwidth. Each part does exactly the
 * arithmetic of its separate kernel, in the same order. */
INL void scores_wsum(kvk_type t, int M, const float *q, size_t q_stride, const char *keys, size_t key_stride,
                     size_t nk16, float scale, float *scores, size_t scores_stride, const float *w, size_t w_stride,
                     const char *values, size_t value_stride, size_t nv, float *out, size_t out_stride) {
    const __m512 sv = _mm512_set1_ps(scale);
    __m512 qv[12], acc[4][4];
    const int preload = scores_preload(q, q_stride, M, 64, qv);
    wsum_load(out, out_stride, M, 0, 4, acc);
    const size_t pd = prefetch_rows(value_stride, 16);
    for (size_t k = 0, j = 0; k < nk16 || j < nv; k += 16) {
        if (k < nk16)
            scores_step(t, q, q_stride, qv, preload, M, keys + k * key_stride, key_stride, 64, sv, scores + k,
                        scores_stride);
        for (const size_t end = nv - j < 16 ? nv : j + 16; j < end; j++)
            wsum_row(t, w, w_stride, M, values, value_stride, j, 0, 4, pd, acc);
    }
    wsum_store(out, out_stride, M, 0, 4, acc);
}

typedef void (*scores_wsum_fn)(const float *q, size_t q_stride, const char *keys, size_t key_stride, size_t nk16,
                               float scale, float *scores, size_t scores_stride, const float *w, size_t w_stride,
                               const char *values, size_t value_stride, size_t nv, float *out, size_t out_stride);
#define SCORES_WSUM_FN(T, M)                                                                                       \
    static TGT512 __attribute__((noinline)) void scores_wsum_##T##_##M(                                            \
        const float *q, size_t q_stride, const char *keys, size_t key_stride, size_t nk16, float scale, float *scores, \
        size_t scores_stride, const float *w, size_t w_stride, const char *values, size_t value_stride, size_t nv,  \
        float *out, size_t out_stride) {                                                                           \
        scores_wsum(T, M, q, q_stride, keys, key_stride, nk16, scale, scores, scores_stride, w, w_stride, values,     \
                    value_stride, nv, out, out_stride);                                                            \
    }
#define SCORES_WSUM_FNS(T) SCORES_WSUM_FN(T, 1) SCORES_WSUM_FN(T, 2) SCORES_WSUM_FN(T, 3) SCORES_WSUM_FN(T, 4)
SCORES_WSUM_FNS(KVK_F32)
SCORES_WSUM_FNS(KVK_F16)
SCORES_WSUM_FNS(KVK_BF16)
#define SCORES_WSUM_ROW(T) {scores_wsum_##T##_1, scores_wsum_##T##_2, scores_wsum_##T##_3, scores_wsum_##T##_4}
static const scores_wsum_fn scores_wsum_fns[3][4] = {SCORES_WSUM_ROW(KVK_F32), SCORES_WSUM_ROW(KVK_F16),
                                                     SCORES_WSUM_ROW(KVK_BF16)};

/* Covers keys and values of the same f32/f16/bf16 type, head dim 64 and 1-4 heads (a GQA group);
 * anything else returns 0 for the dispatcher's two separate calls. */
static TGT512 int avx512_scores_weighted_sum_multi(size_t m, size_t d, kvk_type key_type, const float *q,
                                                   size_t q_stride, const void *keys, size_t key_stride, size_t n_keys,
                                                   float scale, float *scores, size_t scores_stride, kvk_type value_type,
                                                   const float *w, size_t w_stride, const void *values,
                                                   size_t value_stride, size_t n_values, float *out, size_t out_stride) {
    const kvk_type t = key_type;
    if (value_type != t || (t != KVK_F32 && t != KVK_F16 && t != KVK_BF16) || d != 64 || m < 1 || m > 4) return 0;
    const size_t n16 = n_values > 0 ? n_keys & ~(size_t)15 : 0; /* no value rows: out is not touched */
    if (n_values > 0)
        scores_wsum_fns[type_slot(t)][m - 1](q, q_stride, (const char *)keys, key_stride, n16, scale, scores, scores_stride,
                                         w, w_stride, (const char *)values, value_stride, n_values, out, out_stride);
    if (n16 < n_keys) /* the last keys as kvk_scores_multi treats them */
        avx512_scores_multi(t, q, q_stride, m, (const char *)keys + n16 * key_stride, key_stride, n_keys - n16, d,
                            scale, scores + n16, scores_stride);
    return 1;
}

/* ------------------------------------------------------------ Q4_1 x int8 activations (VNNI) */

/* Four activation blocks regrouped to match four Q4_1 weight blocks after their nibble bytes are
 * packed into one vector (byte 16k + i = nibble byte i of block k): lo holds elements 0..15 of each
 * block, hi elements 16..31; d and s give lane 4k + r (block k, weight row r of a 4-row tile) that
 * block's scale d and sum s. Missing blocks are zero. */
typedef struct act_group {
    int8_t lo[64], hi[64];
    float d[16], s[16];
} act_group;

/* Most activation groups handled on the stack (cols up to 32768); longer rows go to AVX2. */
#define KVK_MAX_ACT_GROUPS 256

INL void regroup_act(const kvk_block_q8_act *xq, size_t nb, act_group *g) {
    for (size_t k0 = 0; k0 < nb; k0 += 4) {
        act_group *a = g + k0 / 4;
        memset(a, 0, sizeof *a);
        for (size_t k = 0; k < 4 && k0 + k < nb; k++) {
            const kvk_block_q8_act *b = xq + k0 + k;
            memcpy(a->lo + 16 * k, b->qs, 16);
            memcpy(a->hi + 16 * k, b->qs + 16, 16);
            for (int r = 0; r < 4; r++) {
                a->d[4 * k + r] = b->d;
                a->s[4 * k + r] = b->s;
            }
        }
    }
}

/* One weight row's four blocks as unsigned nibble vectors for vpdpbusd: byte 16k + i of *lo / *hi is
 * element i / i + 16 of block k. nblk == 4 reads the 80 bytes as two overlapping 64-byte loads; a tail
 * group (nblk < 4) uses a masked load that reads nothing past its blocks (missing blocks are zero).
 * Returns the first 64 bytes (the block scales). */
INL __m512i q41_nibbles(const char *blk, size_t nblk, __m512i *lo, __m512i *hi) {
    /* bytes: block k = [d:2][m:2][16 nibble bytes] at 20 k; first load = bytes 0..63, second = 16..79 */
    __m512i lo64, hi64;
    if (nblk == 4) {
        lo64 = _mm512_loadu_si512((const void *)blk);
        hi64 = _mm512_loadu_si512((const void *)(blk + 16));
    } else {
        lo64 = _mm512_maskz_loadu_epi8((((__mmask64)1 << (20 * nblk)) - 1), blk);
        hi64 = _mm512_setzero_si512();
    }
    /* dword indices (all runs start at a multiple of 4 bytes): block k's nibbles = bytes 20k + 4 ..,
     * block 3 from the second load (bytes 64..79 = its dwords 12..15) */
    const __m512i pick = _mm512_set_epi32(31, 30, 29, 28, 14, 13, 12, 11, 9, 8, 7, 6, 4, 3, 2, 1);
    const __m512i nib = _mm512_permutex2var_epi32(lo64, pick, hi64);
    const __m512i mask = _mm512_set1_epi8(0x0f);
    *lo = _mm512_and_si512(nib, mask);
    *hi = _mm512_and_si512(_mm512_srli_epi16(nib, 4), mask);
    return lo64;
}

/* Y[c][0..R) = dot(W_r, X_c) for 4 weight rows w[0..3] (a pointer may repeat; only rows < R are
 * written) and C activation rows (their regrouped blocks at a[c]). Per group of 4 blocks, the weight
 * nibbles and scales are unpacked once for all C activation rows; the four weight rows' per-lane sums
 * are packed into one vector with lane 4k + r = (block k, row r), so the block scales are applied
 * with one multiply-add per 4 rows. pf > 0 prefetches the same bytes pf bytes ahead. */
INL void q41_tile(const char *const *w, const act_group *const *a, int C, size_t nb, int R, float *y, size_t ldy,
                  size_t pf) {
    /* words of two rows' heads -> lane 4k + r: d (low 16 words), m (high 16); rows 0,1 from (a, b);
     * the same index on rows 2,3 fills lanes 4k + 2, 4k + 3 after the blend */
    const __m512i idx01 = _mm512_set_epi16(63, 31, 63, 31, 53, 21, 53, 21, 43, 11, 43, 11, 33, 1, 33, 1,
                                           62, 30, 62, 30, 52, 20, 52, 20, 42, 10, 42, 10, 32, 0, 32, 0);
    __m512 acc[4];
    for (int c = 0; c < C; c++) acc[c] = _mm512_setzero_ps();
    for (size_t k0 = 0; k0 < nb; k0 += 4) {
        const size_t nblk = nb - k0 < 4 ? nb - k0 : 4;
        const size_t off = k0 * sizeof(kvk_block_q4_1);
        if (pf)
            for (int r = 0; r < 4; r++) {
                _mm_prefetch(w[r] + off + pf, _MM_HINT_T0);
                _mm_prefetch(w[r] + off + pf + 64, _MM_HINT_T0);
            }
        __m512i lo[4], hi[4], h[4];
        if (nblk == 4) /* separate instantiations: no mask or branch in the main loop */
            for (int r = 0; r < 4; r++) h[r] = q41_nibbles(w[r] + off, 4, &lo[r], &hi[r]);
        else
            for (int r = 0; r < 4; r++) h[r] = q41_nibbles(w[r] + off, nblk, &lo[r], &hi[r]);
        const __m512i dm = _mm512_mask_blend_epi16(0xCCCCCCCCu, _mm512_permutex2var_epi16(h[0], idx01, h[1]),
                                                   _mm512_permutex2var_epi16(h[2], idx01, h[3]));
        const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dm));
        const __m512 mw = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(dm, 1));
        for (int c = 0; c < C; c++) {
            const act_group *g = a[c] + k0 / 4;
            const __m512i alo = _mm512_loadu_si512((const void *)g->lo), ahi = _mm512_loadu_si512((const void *)g->hi);
            __m512i is[4];
            for (int r = 0; r < 4; r++)
                is[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], alo), hi[r], ahi);
            /* per 128-bit chunk k: [r0, r1, r0, r1] partials, then [r0, r1, r2, r3] totals */
            const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi32(is[0], is[1]), _mm512_unpackhi_epi32(is[0], is[1]));
            const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi32(is[2], is[3]), _mm512_unpackhi_epi32(is[2], is[3]));
            const __m512i tot = _mm512_add_epi32(_mm512_unpacklo_epi64(t01, t23), _mm512_unpackhi_epi64(t01, t23));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), _mm512_mul_ps(dw, _mm512_loadu_ps(g->d)), acc[c]);
            acc[c] = _mm512_fmadd_ps(mw, _mm512_loadu_ps(g->s), acc[c]);
        }
    }
    for (int c = 0; c < C; c++) { /* lanes 4k + r -> row r */
        const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(acc[c]),
                                        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[c]), 1)));
        float res[4];
        _mm_storeu_ps(res, _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1)));
        for (int r = 0; r < R; r++) y[c * ldy + r] = res[r];
    }
}

/* Weight rows [r, r + 4) clamped to `rows` (the last row repeats; its results are not written). */
INL int tile_rows(const char *wc, size_t rb, size_t r, size_t rows, const char **rp) {
    const int R = rows - r < 4 ? (int)(rows - r) : 4;
    for (int i = 0; i < 4; i++) rp[i] = wc + (r + (size_t)(i < R ? i : R - 1)) * rb;
    return R;
}

/* Q4_1 matvec: 4-row tiles prefetched this many tiles ahead (~11 KB at 576 columns). */
#define KVK_Q41_PF_TILES 8

static TGT512 void avx512_matvec_q8act(kvk_type wt, const void *w, size_t rows, size_t cols,
                                       const kvk_block_q8_act *xq, float *y) {
    const size_t nb = cols / KVK_BLOCK;
    if (wt != KVK_Q4_1 || nb == 0 || nb > 4 * KVK_MAX_ACT_GROUPS) {
        kvk_ops_avx2.matvec_q8act(wt, w, rows, cols, xq, y);
        return;
    }
    act_group g[KVK_MAX_ACT_GROUPS];
    regroup_act(xq, nb, g);
    const act_group *a[1] = {g};
    const size_t rb = nb * sizeof(kvk_block_q4_1);
    for (size_t r = 0; r < rows; r += 4) {
        const char *rp[4];
        const int R = tile_rows((const char *)w, rb, r, rows, rp);
        /* weights stream from memory once: prefetch KVK_Q41_PF_TILES tiles ahead (DRAM latency) */
        q41_tile(rp, a, 1, nb, R, y + r, 0, KVK_Q41_PF_TILES * 4 * rb);
    }
}

/* Activation rows regrouped per panel: as many as fit KVK_MAX_ACT_GROUPS groups (at most 16 rows). */
static TGT512 void avx512_matmul_q8act(kvk_type wt, const void *w, size_t rows, size_t cols,
                                       const kvk_block_q8_act *xq, size_t n, float *y, size_t ldy) {
    const size_t nb = cols / KVK_BLOCK, ng = (nb + 3) / 4;
    if (n == 1) {
        avx512_matvec_q8act(wt, w, rows, cols, xq, y);
        return;
    }
    if (wt != KVK_Q4_1 || nb == 0 || ng > KVK_MAX_ACT_GROUPS) {
        kvk_ops_avx2.matmul_q8act(wt, w, rows, cols, xq, n, y, ldy);
        return;
    }
    act_group g[KVK_MAX_ACT_GROUPS];
    size_t panel = KVK_MAX_ACT_GROUPS / ng;
    if (panel > 16) panel = 16;
    const size_t rb = nb * sizeof(kvk_block_q4_1);
    for (size_t i0 = 0; i0 < n; i0 += panel) {
        const size_t p = n - i0 < panel ? n - i0 : panel;
        for (size_t i = 0; i < p; i++) regroup_act(xq + (i0 + i) * nb, nb, g + i * ng);
        /* weight tiles stay in L1 while the panel's activation rows pass, 4 at a time */
        for (size_t r = 0; r < rows; r += 4) {
            const char *rp[4];
            const int R = tile_rows((const char *)w, rb, r, rows, rp);
            for (size_t i = 0; i < p; i += 4) {
                const act_group *a[4] = {g + i * ng, g + (i + 1) * ng, g + (i + 2) * ng, g + (i + 3) * ng};
                float *yt = y + (i0 + i) * ldy + r;
                switch (p - i) { /* constant C per call: accumulators stay in registers */
                case 1: q41_tile(rp, a, 1, nb, R, yt, ldy, 0); break;
                case 2: q41_tile(rp, a, 2, nb, R, yt, ldy, 0); break;
                case 3: q41_tile(rp, a, 3, nb, R, yt, ldy, 0); break;
                default: q41_tile(rp, a, 4, nb, R, yt, ldy, 0); break;
                }
            }
        }
    }
}

void kvk_avx512_override(kvk_ops *o) {
    o->isa = KVK_ISA_AVX512;
    o->sum_f32 = avx512_sum_f32;
    o->softmax_unnormalized = avx512_softmax_unnormalized;
    o->scores = avx512_scores;
    o->weighted_sum = avx512_weighted_sum;
    o->scores_multi = avx512_scores_multi;
    o->weighted_sum_multi = avx512_weighted_sum_multi;
    o->scores_weighted_sum_multi = avx512_scores_weighted_sum_multi;
    o->kivi_scores_multi = avx512_kivi_scores_multi;
    o->matvec_q8act = avx512_matvec_q8act;
    o->matmul_q8act = avx512_matmul_q8act;
    /* unmeasured against this table's own Q4_1 kernel (q41_tile): keep GGUF's layout here */
    o->matmul_q8act_rows4 = NULL;
}

#endif
