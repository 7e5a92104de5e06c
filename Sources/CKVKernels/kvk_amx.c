/*
 * AMX-INT8 (Intel Advanced Matrix Extensions) scores of up to 3 queries against q8_0 keys of head
 * dim 64, the hot kernel of decode attention over a q8_0 cache (one GQA group of 3 query heads per KV
 * head in the default model). The tile unit multiplies 16 key rows, read in place from the cache, by
 * all the queries at once, while the vector units turn the previous 16 keys' integer sums into
 * scores. Linux on x86-64 only: a process must ask the kernel for the tile state before its first
 * tile instruction. Every other shape goes to the AVX-512 table's kernel.
 *
 * One tile product covers key bytes 4-67 (block 0's quants 2-31, block 1's scale and quants), a second
 * one bytes 0-3 (block 0's scale and quants 0-1). The queries are rounded to 16-bit fixed point and
 * split into two signed bytes by the same code as in the AVX-512 VNNI path (kvk_q16_split), so the
 * integer block dots are exact and both paths give identical scores. Result columns
 * (16 int32 per key): head h < 3 at 4h + (block 0 high, block 0 low, block 1 high, block 1 low); 12-15
 * copy the two block scales' bytes (block 0 high, low, block 1 high, low) out of the key rows, so no
 * gather is needed for them.
 */
#include "kvk_internal.h"

#if defined(__x86_64__)
#if defined(__linux__) && (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TGTAMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,amx-tile,amx-int8")))
#define INL static inline __attribute__((always_inline)) TGTAMX

/* Keys per call from which the tile path pays for its set-up (tile configuration and query layout,
 * a few hundred ns; measured break-even with the VNNI path at 128-256 keys). */
#define KVK_AMX_MIN_KEYS 256

/* ------------------------------------------------------------ availability */

static int g_amx_usable;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

static void amx_probe(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return; /* AMX-TILE, AMX-INT8 */
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return;                                  /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return; /* the OS saves XTILECFG and XTILEDATA */
    /* ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: without it the first tile instruction faults */
    g_amx_usable = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

int kvk_amx_usable(void) {
    pthread_once(&g_amx_once, amx_probe);
    return g_amx_usable;
}

/* ------------------------------------------------------------ the queries as a tile */

typedef struct amx_query {
    int8_t main[16][64]; /* key bytes 4-67: row r pairs bytes 4r + 4 .. 4r + 7 with 4 bytes per column */
    int8_t head[64];     /* key bytes 0-3 */
    float s[3];          /* q_h ~= s[h] (256 hi + lo) */
} amx_query;

typedef struct amx_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

static TGTAMX void amx_prepare(const float *q, size_t q_stride, int M, amx_query *p) {
    memset(p, 0, sizeof *p);
    for (int h = 0; h < M; h++) {
        const float *qh = q + h * q_stride;
        __m512 iq;
        p->s[h] = kvk_q16_scale(qh, 64, &iq);
        /* per block: its 32 high and low bytes at [2, 34) of a zero-padded buffer, so that every
         * 4-byte group of the key layout is one unaligned 4-byte read */
        int8_t bytes[2][2][36] = {{{0}}};
        for (int i = 0; i < 64; i += 16) {
            __m512i v, vh, vl;
            kvk_q16_split(qh + i, iq, &v, &vh, &vl);
            _mm_storeu_si128((__m128i *)&bytes[i / 32][0][2 + i % 32], _mm512_cvtepi32_epi8(vh));
            _mm_storeu_si128((__m128i *)&bytes[i / 32][1][2 + i % 32], _mm512_cvtepi32_epi8(vl));
        }
        for (int part = 0; part < 2; part++) {
            const int c0 = 4 * h + part, c1 = 4 * h + 2 + part; /* columns of block 0 and block 1 */
            memcpy(&p->head[4 * c0], &bytes[0][part][0], 4);   /* bytes 0-3: scale, dims 0-1 */
            for (int r = 0; r < 8; r++) {
                memcpy(&p->main[r][4 * c0], &bytes[0][part][4 * r + 4], 4);     /* dims 2-31, block 1 scale */
                memcpy(&p->main[8 + r][4 * c1], &bytes[1][part][4 * r + 2], 4); /* block 1 dims */
            }
        }
    }
    p->head[4 * 12 + 1] = 1; /* block 0 scale: high byte (key byte 1), low byte (key byte 0) */
    p->head[4 * 13 + 0] = 1;
    p->main[7][4 * 14 + 3] = 1; /* block 1 scale: key bytes 35 and 34 */
    p->main[7][4 * 15 + 2] = 1;
}

/* ------------------------------------------------------------ integer sums -> scores */

/* 4 x 4 transpose of 128-bit chunks: chunk g of v[c] <- chunk c of v[g]. */
INL void transpose_chunks(__m512i *v) {
    const __m512i t0 = _mm512_shuffle_i32x4(v[0], v[1], 0x44), t1 = _mm512_shuffle_i32x4(v[0], v[1], 0xEE);
    const __m512i t2 = _mm512_shuffle_i32x4(v[2], v[3], 0x44), t3 = _mm512_shuffle_i32x4(v[2], v[3], 0xEE);
    v[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);
    v[1] = _mm512_shuffle_i32x4(t0, t2, 0xDD);
    v[2] = _mm512_shuffle_i32x4(t1, t3, 0x88);
    v[3] = _mm512_shuffle_i32x4(t1, t3, 0xDD);
}

/* The scores of 16 keys from their sums c[key][column]: per 4 keys, two unpack levels put column
 * 4h + j of those keys into chunk h of vector j; 256 high + low gives each block's dot (chunk 3: the
 * scale's 16 bits, high byte from the shifted vector, low byte from the other); a chunk transpose
 * then gives one vector of 16 keys per head and per scale. */
INL void amx_finish(const int32_t (*c)[16], int M, const float *sc, float *out, size_t out_stride) {
    const __m512i low8 = _mm512_set1_epi32(0xFF);
    __m512i b0[4], b1[4];
    for (int g = 0; g < 4; g++) {
        const __m512i r0 = _mm512_load_si512(c[4 * g]), r1 = _mm512_load_si512(c[4 * g + 1]);
        const __m512i r2 = _mm512_load_si512(c[4 * g + 2]), r3 = _mm512_load_si512(c[4 * g + 3]);
        const __m512i a0 = _mm512_unpacklo_epi32(r0, r1), a1 = _mm512_unpackhi_epi32(r0, r1);
        const __m512i a2 = _mm512_unpacklo_epi32(r2, r3), a3 = _mm512_unpackhi_epi32(r2, r3);
        const __m512i hi0 = _mm512_slli_epi32(_mm512_unpacklo_epi64(a0, a2), 8);
        const __m512i hi1 = _mm512_slli_epi32(_mm512_unpacklo_epi64(a1, a3), 8);
        /* chunks 0-2: high * 256 + low; chunk 3: (high << 8) & 0xFF00 | low & 0xFF, the f16 bits */
        b0[g] = _mm512_mask_ternarylogic_epi32(_mm512_add_epi32(hi0, _mm512_unpackhi_epi64(a0, a2)), 0xF000, hi0, low8, 0xE4);
        b1[g] = _mm512_mask_ternarylogic_epi32(_mm512_add_epi32(hi1, _mm512_unpackhi_epi64(a1, a3)), 0xF000, hi1, low8, 0xE4);
    }
    transpose_chunks(b0);
    transpose_chunks(b1);
    const __m512 d0 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(b0[3])), d1 = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(b1[3]));
    for (int h = 0; h < M; h++) {
        const __m512 s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(b1[h]), d1, _mm512_mul_ps(_mm512_cvtepi32_ps(b0[h]), d0));
        _mm512_storeu_ps(out + h * out_stride, _mm512_mul_ps(s, _mm512_set1_ps(sc[h])));
    }
}

/* ------------------------------------------------------------ the kernel */

/* Tiles: 0/1 sums, 2/3 key bytes 4-67, 4/5 key bytes 0-3 (two sets: the next 16 keys are multiplied
 * while this step's sums are finished), 6/7 the queries. */
#define AMX_PRODUCT(C, AM, AH, rows, stride)          \
    do {                                             \
        _tile_zero(C);                               \
        _tile_loadd(AM, (rows) + 4, (long)(stride)); \
        _tile_loadd(AH, (rows), (long)(stride));     \
        _tile_dpbssd(C, AM, 6);                      \
        _tile_dpbssd(C, AH, 7);                      \
    } while (0)

static TGTAMX void amx_scores_group(const float *q, size_t q_stride, int M, const char *keys, size_t stride,
                                    size_t n16, float scale, float *out, size_t out_stride) {
    amx_query qp __attribute__((aligned(64)));
    amx_prepare(q, q_stride, M, &qp);
    float sc[3];
    for (int h = 0; h < M; h++) sc[h] = scale * qp.s[h];
    amx_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    cfg.colsb[4] = cfg.colsb[5] = 4; /* key bytes 0-3 */
    cfg.rows[7] = 1;                 /* their query bytes */
    _tile_loadconfig(&cfg);
    _tile_loadd(6, qp.main, 64);
    _tile_loadd(7, qp.head, 64);
    int32_t sums[2][16][16] __attribute__((aligned(64)));
    AMX_PRODUCT(0, 2, 4, keys, stride);
    _tile_stored(0, sums[0], 64);
    for (size_t j = 0, k = 0; j < n16; j += 16, k ^= 1) {
        const int next = j + 16 < n16;
        const char *rows = keys + (j + 16) * stride;
        /* tile loads do not run ahead of a miss: the rows 64 ahead of this step's are fetched now */
        for (size_t o = 0; o < 16 * stride; o += 64) _mm_prefetch(rows + 48 * stride + o, _MM_HINT_T0);
        if (next && k == 0) AMX_PRODUCT(1, 3, 5, rows, stride);
        if (next && k == 1) AMX_PRODUCT(0, 2, 4, rows, stride);
        amx_finish((const int32_t (*)[16])sums[k], M, sc, out + j, out_stride);
        if (next && k == 0) _tile_stored(1, sums[1], 64);
        if (next && k == 1) _tile_stored(0, sums[0], 64);
    }
    _tile_release();
}

static void (*g_fallback_scores_multi)(kvk_type, const float *, size_t, size_t, const void *, size_t, size_t, size_t,
                                       float, float *, size_t);

static TGTAMX void amx_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys,
                                    size_t key_stride, size_t n, size_t d, float scale, float *out, size_t out_stride) {
    const size_t n16 = n & ~(size_t)15;
    if (t != KVK_Q8_0 || d != 64 || n16 < KVK_AMX_MIN_KEYS || m >= KVK_WIDE_MIN_M) {
        g_fallback_scores_multi(t, q, q_stride, m, keys, key_stride, n, d, scale, out, out_stride);
        return;
    }
    for (size_t h0 = 0; h0 < m; h0 += 3)
        amx_scores_group(q + h0 * q_stride, q_stride, m - h0 < 3 ? (int)(m - h0) : 3, (const char *)keys, key_stride,
                         n16, scale, out + h0 * out_stride, out_stride);
    if (n16 < n)
        g_fallback_scores_multi(t, q, q_stride, m, (const char *)keys + n16 * key_stride, key_stride, n - n16, d, scale,
                                out + n16, out_stride);
}

static TGTAMX void amx_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                              float scale, float *out) {
    amx_scores_multi(t, q, 0, 1, keys, key_stride, n, d, scale, out, 0);
}

void kvk_amx_override(kvk_ops *o) {
    g_fallback_scores_multi = o->scores_multi;
    o->isa = KVK_ISA_AMX;
    o->scores_multi = amx_scores_multi;
    o->scores = amx_scores;
}

#else /* no tile state to ask for (not Linux) or no AMX intrinsics (old compiler) */

int kvk_amx_usable(void) { return 0; }
void kvk_amx_override(kvk_ops *o) { (void)o; }

#endif
#endif
