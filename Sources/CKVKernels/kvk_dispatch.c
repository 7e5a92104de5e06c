/*
 * Runtime dispatch: the public entry points forward to one function table, chosen once at first
 * use (thread-safe) from the CPU's features and the environment (KVK_FORCE_SCALAR, KVK_ISA), and
 * switchable at any time with kvk_set_isa / kvk_set_force_scalar.
 */
#include "kvk_internal.h"
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic(const kvk_ops *) g_ops = NULL;
static _Atomic(const kvk_ops *) g_best = NULL;

#if defined(__x86_64__)
/* The AVX-512 table: the AVX2 table with the kernels kvk_avx512.c overrides, built once. */
static kvk_ops g_avx512_ops;
static pthread_once_t g_avx512_once = PTHREAD_ONCE_INIT;
static void build_avx512(void) {
    g_avx512_ops = kvk_ops_avx2;
    kvk_avx512_override(&g_avx512_ops);
}
/* The AMX table: the AVX-512 table with the kernels kvk_amx.c overrides. */
static kvk_ops g_amx_ops;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;
static void build_amx(void) {
    pthread_once(&g_avx512_once, build_avx512);
    g_amx_ops = g_avx512_ops;
    kvk_amx_override(&g_amx_ops);
}
static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
static int cpu_has_avx512(void) {
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
}
#endif

/* The table for an ISA, or NULL when this CPU (or build) cannot run it. */
static const kvk_ops *table_for(kvk_isa isa) {
    switch (isa) {
    case KVK_ISA_SCALAR: return &kvk_ops_scalar;
#if defined(__x86_64__)
    case KVK_ISA_AVX2: return cpu_has_avx2() ? &kvk_ops_avx2 : NULL;
    case KVK_ISA_AVX512:
        if (!cpu_has_avx512()) return NULL;
        pthread_once(&g_avx512_once, build_avx512);
        return &g_avx512_ops;
    case KVK_ISA_AMX:
        if (!cpu_has_avx512() || !kvk_amx_usable()) return NULL;
        pthread_once(&g_amx_once, build_amx);
        return &g_amx_ops;
#endif
#if defined(__aarch64__)
    case KVK_ISA_NEON: return &kvk_ops_neon; /* Advanced SIMD is mandatory on AArch64. */
#endif
    default: return NULL;
    }
}

static const kvk_ops *best_ops(void) {
    const kvk_ops *b = atomic_load_explicit(&g_best, memory_order_acquire);
    if (b) return b;
    const kvk_isa order[] = {KVK_ISA_AMX, KVK_ISA_AVX512, KVK_ISA_AVX2, KVK_ISA_NEON, KVK_ISA_SCALAR};
    for (size_t i = 0; i < sizeof order / sizeof order[0] && !b; i++) b = table_for(order[i]);
    atomic_store_explicit(&g_best, b, memory_order_release); /* racing threads store the same table */
    return b;
}

/* The table the environment asks for: KVK_FORCE_SCALAR (non-empty, not "0") or KVK_ISA=scalar|avx2|
 * avx512|amx|neon; NULL when neither is set. An unknown or unsupported KVK_ISA is reported on stderr at
 * first use and ignored (the best ISA is used). */
static const kvk_ops *env_ops(void) {
    const char *v = getenv("KVK_FORCE_SCALAR");
    if (v != NULL && v[0] != '\0' && strcmp(v, "0") != 0) return &kvk_ops_scalar;
    const char *isa = getenv("KVK_ISA");
    if (isa == NULL || isa[0] == '\0') return NULL;
    const kvk_ops *t = NULL;
    if (strcmp(isa, "scalar") == 0) t = &kvk_ops_scalar;
    else if (strcmp(isa, "avx2") == 0) t = table_for(KVK_ISA_AVX2);
    else if (strcmp(isa, "avx512") == 0) t = table_for(KVK_ISA_AVX512);
    else if (strcmp(isa, "amx") == 0) t = table_for(KVK_ISA_AMX);
    else if (strcmp(isa, "neon") == 0) t = table_for(KVK_ISA_NEON);
    if (t == NULL)
        fprintf(stderr, "CKVKernels: KVK_ISA=%s is not one of scalar|avx2|avx512|amx|neon supported by this CPU; "
                        "using the best supported ISA\n", isa);
    return t;
}

static const kvk_ops *init_ops(void) {
    const kvk_ops *env = env_ops();
    const kvk_ops *chosen = env ? env : best_ops();
    const kvk_ops *expected = NULL;
    /* Only the first initializer wins; a concurrent kvk_set_isa is never overwritten. */
    if (atomic_compare_exchange_strong_explicit(&g_ops, &expected, chosen, memory_order_acq_rel,
                                                memory_order_acquire))
        return chosen;
    return expected;
}

static inline const kvk_ops *ops(void) {
    const kvk_ops *o = atomic_load_explicit(&g_ops, memory_order_acquire);
    if (__builtin_expect(o != NULL, 1)) return o;
    return init_ops();
}

kvk_isa kvk_active_isa(void) { return ops()->isa; }
kvk_isa kvk_best_isa(void) { return best_ops()->isa; }
int kvk_isa_supported(kvk_isa isa) { return table_for(isa) != NULL; }

int kvk_set_isa(kvk_isa isa) {
    const kvk_ops *t = table_for(isa);
    if (t == NULL) return 0;
    (void)ops(); /* make sure the environment was consulted first, so it cannot override this call */
    atomic_store_explicit(&g_ops, t, memory_order_release);
    return 1;
}

void kvk_set_force_scalar(int force) { (void)kvk_set_isa(force ? KVK_ISA_SCALAR : best_ops()->isa); }

int kvk_force_scalar_enabled(void) { return ops()->isa == KVK_ISA_SCALAR && best_ops()->isa != KVK_ISA_SCALAR; }

size_t kvk_row_bytes(kvk_type t, size_t n) { return kvk_type_bytes(t, n); }

float kvk_dot_f32(const float *a, const float *b, size_t n) { return ops()->dot_f32(a, b, n); }
void kvk_axpy_f32(float alpha, const float *x, float *y, size_t n) { ops()->axpy_f32(alpha, x, y, n); }
void kvk_scale_f32(float alpha, float *x, size_t n) { ops()->scale_f32(alpha, x, n); }
float kvk_sum_f32(const float *x, size_t n) { return ops()->sum_f32(x, n); }

void kvk_f16_to_f32(const uint16_t *src, float *dst, size_t n) { ops()->f16_to_f32(src, dst, n); }
void kvk_f32_to_f16(const float *src, uint16_t *dst, size_t n) { ops()->f32_to_f16(src, dst, n); }
void kvk_bf16_to_f32(const uint16_t *src, float *dst, size_t n) { ops()->bf16_to_f32(src, dst, n); }
void kvk_f32_to_bf16(const float *src, uint16_t *dst, size_t n) { ops()->f32_to_bf16(src, dst, n); }
void kvk_quantize(kvk_type t, const float *src, void *dst, size_t n) { ops()->quantize(t, src, dst, n); }
void kvk_dequantize(kvk_type t, const void *src, float *dst, size_t n) { ops()->dequantize(t, src, dst, n); }

void kvk_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                float scale, float *out) {
    ops()->scores(t, q, keys, key_stride, n, d, scale, out);
}
void kvk_weighted_sum(kvk_type t, const float *w, const void *values, size_t value_stride, size_t n,
                      size_t d, float *out) {
    ops()->weighted_sum(t, w, values, value_stride, n, d, out);
}

void kvk_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys, size_t key_stride,
                      size_t n, size_t d, float scale, float *out, size_t out_stride) {
    ops()->scores_multi(t, q, q_stride, m, keys, key_stride, n, d, scale, out, out_stride);
}
void kvk_weighted_sum_multi(kvk_type t, const float *w, size_t w_stride, size_t m, const void *values,
                            size_t value_stride, size_t n, size_t d, float *out, size_t out_stride) {
    ops()->weighted_sum_multi(t, w, w_stride, m, values, value_stride, n, d, out, out_stride);
}
void kvk_kivi_scores_multi(int bits, const float *q, size_t q_stride, size_t m, const void *codes, size_t code_stride,
                           const uint16_t *params, size_t n, size_t d, float scale, float *out, size_t out_stride) {
    ops()->kivi_scores_multi(bits, q, q_stride, m, codes, code_stride, params, n, d, scale, out, out_stride);
}

void kvk_scores_weighted_sum_multi(size_t m, size_t d, kvk_type key_type, const float *q, size_t q_stride,
                                   const void *keys, size_t key_stride, size_t n_keys, float scale, float *scores,
                                   size_t scores_stride, kvk_type value_type, const float *w, size_t w_stride,
                                   const void *values, size_t value_stride, size_t n_values, float *out,
                                   size_t out_stride) {
    const kvk_ops *o = ops();
    if (o->scores_weighted_sum_multi &&
        o->scores_weighted_sum_multi(m, d, key_type, q, q_stride, keys, key_stride, n_keys, scale, scores, scores_stride,
                                     value_type, w, w_stride, values, value_stride, n_values, out, out_stride))
        return;
    if (n_keys > 0) o->scores_multi(key_type, q, q_stride, m, keys, key_stride, n_keys, d, scale, scores, scores_stride);
    if (n_values > 0) o->weighted_sum_multi(value_type, w, w_stride, m, values, value_stride, n_values, d, out, out_stride);
}

void kvk_matvec(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, float *y) {
    ops()->matvec(wt, w, rows, cols, x, y);
}
void kvk_matmul(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, size_t n,
                float *y, size_t ldy) {
    ops()->matmul(wt, w, rows, cols, x, n, y, ldy);
}

void kvk_quantize_act(const float *x, kvk_block_q8_act *out, size_t n) { ops()->quantize_act(x, out, n); }
void kvk_matvec_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                      float *y) {
    ops()->matvec_q8act(wt, w, rows, cols, xq, y);
}
void kvk_matmul_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                      size_t n, float *y, size_t ldy) {
    ops()->matmul_q8act(wt, w, rows, cols, xq, n, y, ldy);
}
int kvk_rows4_preferred(kvk_type wt) {
    return (wt == KVK_Q4_1 || wt == KVK_Q8_0) && ops()->matmul_q8act_rows4 != NULL;
}
void kvk_matmul_q8act_rows4(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                            size_t n, float *y, size_t ldy) {
    const kvk_ops *o = ops();
    if (o->matmul_q8act_rows4) o->matmul_q8act_rows4(wt, w, rows, cols, xq, n, y, ldy);
    else kvk_scalar_matmul_q8act_rows4(wt, w, rows, cols, xq, n, y, ldy);
}

void kvk_rmsnorm(const float *x, const float *weight, float *y, size_t n, float eps) {
    ops()->rmsnorm(x, weight, y, n, eps);
}
void kvk_silu_mul(const float *gate, const float *up, float *out, size_t n) { ops()->silu_mul(gate, up, out, n); }
float kvk_softmax_unnormalized(float *x, size_t n, float *shift) {
    return ops()->softmax_unnormalized(x, n, shift);
}
float kvk_softmax(float *x, size_t n) {
    const kvk_ops *o = ops();
    float mx = -INFINITY;
    const float s = o->softmax_unnormalized(x, n, &mx);
    if (s > 0.0f) o->scale_f32(1.0f / s, x, n);
    return s;
}
void kvk_rope(float *x, size_t rows, size_t heads, size_t d, size_t row_stride, const int32_t *positions,
              const float *inv_freq, kvk_rope_pairing pairing) {
    ops()->rope(x, rows, heads, d, row_stride, positions, inv_freq, pairing);
}
