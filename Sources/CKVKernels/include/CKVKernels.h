/*
 * CKVKernels: raw-pointer SIMD kernels for KVCompress.
 *
 * Contract for every function in this header:
 *  - no allocation, no threads, no global state besides the once-chosen ISA;
 *  - pointers may be unaligned; n == 0 is valid and does nothing (dot returns 0);
 *  - block formats (q8_0, q4_0, q4_1) use the GGUF byte layout and 32-element blocks; element counts
 *    handed to block kernels must be multiples of KVK_BLOCK (callers check, kernels assume); q2_1
 *    (this library's, below) is a cache type only: the attention kernels, quantize and dequantize
 *    take it, the matrix products do not;
 *  - the implementation is chosen once at first use: on x86_64 AVX-512 (F, BW, VL, DQ, VNNI)
 *    when the CPU has it, else AVX2+FMA+F16C; NEON on arm64; portable scalar C everywhere else.
 *    Setting the environment variable KVK_FORCE_SCALAR=1 (or KVK_ISA=scalar|avx2|avx512|amx|neon) before
 *    first use, or calling kvk_set_force_scalar(1) / kvk_set_isa at any time, selects another path
 *    (tests use this to cover every path this CPU can run); a KVK_ISA this CPU cannot run is
 *    reported on stderr and ignored.
 */
#ifndef CKVKERNELS_H
#define CKVKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- dispatch */

/** Instruction sets a kernel family can run on. */
typedef enum kvk_isa {
    KVK_ISA_SCALAR = 0,
    KVK_ISA_AVX2 = 1, /* AVX2 + FMA + F16C */
    KVK_ISA_NEON = 2,
    KVK_ISA_AVX512 = 3, /* AVX-512 F/BW/VL/DQ/VNNI (plus AVX2, FMA, F16C); kernels without an
                           AVX-512 version use the AVX2 one */
    KVK_ISA_AMX = 4     /* AVX-512 plus AMX-INT8 tiles (Linux, x86-64): q8_0 attention scores with head
                           dim 64 over 256+ keys; every other kernel is the AVX-512 one */
} kvk_isa;

/** The ISA the kernels currently use (after KVK_FORCE_SCALAR / KVK_ISA / kvk_set_isa). */
kvk_isa kvk_active_isa(void);
/** The best ISA this CPU supports, ignoring any forcing. */
kvk_isa kvk_best_isa(void);
/** 1 when this CPU and build can run `isa`, else 0. */
int kvk_isa_supported(kvk_isa isa);
/** Switches every later call to `isa`; returns 1, or 0 (and changes nothing) when the ISA is not
 *  supported here. Thread-safe (atomic); calls already running finish on their path. */
int kvk_set_isa(kvk_isa isa);
/** 1 forces the scalar path for every later call, 0 returns to the best ISA. Thread-safe (atomic). */
void kvk_set_force_scalar(int force);
/** 1 when the scalar path is in use although the CPU has a SIMD path, else 0. */
int kvk_force_scalar_enabled(void);

/* ---------------------------------------------------------------- element types */

/** Element types of tensors, caches and weights. Values equal GGML's type ids for the shared ones. */
typedef enum kvk_type {
    KVK_F32 = 0,
    KVK_F16 = 1,
    KVK_Q4_0 = 2,
    KVK_Q4_1 = 3,
    KVK_Q8_0 = 8,
    KVK_BF16 = 30,
    KVK_Q2_1 = 1002 /* not a GGML type: this library's 2-bit block with a min (KIVI-2 values) */
} kvk_type;

#define KVK_BLOCK 32

/** GGUF block_q8_0: fp16 scale d, 32 signed bytes; x = d * q. 34 bytes. */
typedef struct kvk_block_q8_0 { uint16_t d; int8_t qs[KVK_BLOCK]; } kvk_block_q8_0;
/** GGUF block_q4_0: fp16 scale d, 16 bytes of nibbles; element i<16 is the low nibble of qs[i],
 *  element i+16 the high nibble; x = d * (q - 8). 18 bytes. */
typedef struct kvk_block_q4_0 { uint16_t d; uint8_t qs[KVK_BLOCK / 2]; } kvk_block_q4_0;
/** GGUF block_q4_1: fp16 scale d and min m, nibbles as q4_0; x = d * q + m. 20 bytes. */
typedef struct kvk_block_q4_1 { uint16_t d; uint16_t m; uint8_t qs[KVK_BLOCK / 2]; } kvk_block_q4_1;

/** This library's 2-bit block (not a GGML type; KIVI-2's per-token values in groups of 32 channels):
 *  fp16 scale d and min m, 8 bytes of 2-bit codes; element i is bits 2*(i / 8) .. 2*(i / 8) + 1 of
 *  qs[i % 8]; x = d * q + m. 12 bytes. The quantizer rounds as q4_1's: d = (max - min) / 3,
 *  q = min(3, (int)((x - min) / d + 0.5)), a constant block gets d = 0 and q = 0. */
typedef struct kvk_block_q2_1 { uint16_t d; uint16_t m; uint8_t qs[KVK_BLOCK / 4]; } kvk_block_q2_1;

/** Bytes used by n elements of type t (n a multiple of KVK_BLOCK for block types). */
size_t kvk_row_bytes(kvk_type t, size_t n);

/* ---------------------------------------------------------------- basic f32 */

/** sum_i a[i] * b[i], accumulated in f32 lanes. */
float kvk_dot_f32(const float *a, const float *b, size_t n);
/** y[i] += alpha * x[i]. */
void kvk_axpy_f32(float alpha, const float *x, float *y, size_t n);
/** x[i] *= alpha. */
void kvk_scale_f32(float alpha, float *x, size_t n);
/** sum_i x[i] (used by the benchmark as the same-run read-bandwidth reference). */
float kvk_sum_f32(const float *x, size_t n);

/* ---------------------------------------------------------------- conversion */

void kvk_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/** Round to nearest even; overflow gives +-inf, NaN stays NaN. */
void kvk_f32_to_f16(const float *src, uint16_t *dst, size_t n);
void kvk_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/** Round to nearest even; NaN stays NaN. */
void kvk_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

/** Quantizes n f32 values (n % 32 == 0) into blocks of type t (Q8_0, Q4_0 or Q4_1), rounding as GGML's
 *  reference quantizers do. For F32/F16/BF16 it converts. */
void kvk_quantize(kvk_type t, const float *src, void *dst, size_t n);
/** Dequantizes / converts n elements of type t to f32. */
void kvk_dequantize(kvk_type t, const void *src, float *dst, size_t n);

/* ---------------------------------------------------------------- attention building blocks */

/** Scores of one query against n keys of head dim d:
 *  out[j] = scale * dot(q, key_j), key_j at (const char *)keys + j * key_stride bytes, stored as t
 *  (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q2_1; d % 32 == 0 for block types). For block-quantized keys a
 *  SIMD path may round q to 16-bit fixed point first (per-call scale max|q|/32767, or max|q|/32639
 *  where the AVX-512 path splits it into two signed bytes; error <= max|q|/65278 per element, far
 *  below the keys' own quantization error) so that block dots are exact integers (Q4_1/Q2_1: the
 *  block minimum times the block's sum of q is added in f32). */
void kvk_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                float scale, float *out);
/** Weighted sum of n value rows: out[i] += sum_j w[j] * value_j[i], value_j at
 *  (const char *)values + j * value_stride bytes, stored as t (same types as kvk_scores). For Q8_0
 *  rows the AVX-512 path sums exact integer products: per 32 rows, it rounds each w[j] times the
 *  row's block scale to 16-bit fixed point against the largest such product among those rows
 *  (error <= that / 65534 per weight, at most an eighth of the int8 values' own rounding). */
void kvk_weighted_sum(kvk_type t, const float *w, const void *values, size_t value_stride, size_t n,
                      size_t d, float *out);

/** Scores of m queries against the same n keys (the query heads of one GQA group), reading each key
 *  once: out[h * out_stride + j] = scale * dot(q_h, key_j), q_h at q + h * q_stride floats.
 *  Same key types and rounding notes as kvk_scores. */
void kvk_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys, size_t key_stride,
                      size_t n, size_t d, float scale, float *out, size_t out_stride);
/** Weighted sums of the same n value rows for m heads, reading each row once:
 *  out_h[i] += sum_j w_h[j] * value_j[i], with w_h at w + h * w_stride and out_h at out + h * out_stride. */
void kvk_weighted_sum_multi(kvk_type t, const float *w, size_t w_stride, size_t m, const void *values,
                            size_t value_stride, size_t n, size_t d, float *out, size_t out_stride);
/** Both halves of a software-pipelined decode in one pass over the rows: the scores of m queries
 *  against n_keys keys (exactly kvk_scores_multi(key_type, q, q_stride, m, keys, key_stride, n_keys,
 *  d, scale, scores, scores_stride)) and the weighted sums of n_values other value rows (exactly
 *  kvk_weighted_sum_multi(value_type, w, w_stride, m, values, value_stride, n_values, d, out,
 *  out_stride)), typically chunk i's scores and chunk i - 1's sums. Interleaving them lets the value
 *  rows stream in while the scores keep the arithmetic units busy; the results are bit-identical to
 *  the two calls. Either count may be 0; the pointers of an empty part are not used (may be NULL).
 *  `scores` must not overlap `w` or `out`. */
void kvk_scores_weighted_sum_multi(size_t m, size_t d, kvk_type key_type, const float *q, size_t q_stride,
                                   const void *keys, size_t key_stride, size_t n_keys, float scale, float *scores,
                                   size_t scores_stride, kvk_type value_type, const float *w, size_t w_stride,
                                   const void *values, size_t value_stride, size_t n_values, float *out,
                                   size_t out_stride);

/* ---------------------------------------------------------------- KIVI keys (per channel over a token group) */

/* A KIVI key group: n <= 2^31 rows of d unsigned codes of `bits` bits (2 or 4; d % 32 == 0), packed
 * per 32 channels into 4 * bits bytes like q2_1 / q4_1 codes (channel i of a 32-channel chunk is
 * the bits-wide field at bit bits * (i / (4 * bits)) of byte i % (4 * bits)), and one parameter row of 2 * d fp16 values:
 * scale[0..d) then min[d..2d); key_jc = scale_c * code_jc + min_c. Code rows are code_stride bytes
 * apart (at least d * bits / 8). */

/** Quantizes n f32 rows (row r at src + r * src_stride floats) into one KIVI group: per channel
 *  min and max over the n rows, scale = (max - min) / (2^bits - 1) and min stored as fp16, codes
 *  round((x - min) / scale) clamped to 0 .. 2^bits - 1, computed against the stored fp16 values. A
 *  constant channel gets scale 0 and codes 0 (no division by zero). n == 0 writes nothing. */
void kvk_kivi_quantize_keys(int bits, const float *src, size_t src_stride, size_t n, size_t d, void *codes,
                            size_t code_stride, uint16_t *params);
/** Row `codes` of a KIVI group with parameters `params`, as d f32 values. */
void kvk_kivi_dequantize_key(int bits, const void *codes, const uint16_t *params, size_t d, float *out);
/** Scores of m queries against n code rows of one KIVI group, without dequantizing the rows:
 *  out[h * out_stride + j] = scale * (dot(q_h * scale_vec, code_j) + dot(q_h, min_vec)), q_h at
 *  q + h * q_stride floats. A SIMD path may round q' = q_h * scale_vec to 16-bit fixed point (scale
 *  max|q'| / 32639 on AVX-512, max|q'| / 32767 per head on AVX2; error <= max|q'| / 65278 per element,
 *  far below the codes' own quantization error) so that the code dots are exact integers, as
 *  kvk_scores does for block keys. */
void kvk_kivi_scores_multi(int bits, const float *q, size_t q_stride, size_t m, const void *codes, size_t code_stride,
                           const uint16_t *params, size_t n, size_t d, float scale, float *out, size_t out_stride);

/* ---------------------------------------------------------------- matrix products */

/** y[r] = dot(W_r, x) for r in 0..<rows; W row-major with rows of `cols` elements of type wt
 *  (F32, F16, BF16, Q8_0, Q4_0, Q4_1; cols % 32 == 0 for block types), rows packed back to back. */
void kvk_matvec(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, float *y);
/** Y[i][r] = dot(W_r, X[i]) for i in 0..<n: X is n x cols (row stride cols), Y is n x rows
 *  (row stride ldy >= rows). Same weight types as kvk_matvec; reads each weight row once per tile. */
void kvk_matmul(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, size_t n,
                float *y, size_t ldy);

/* ---------------------------------------------------------------- fast path: int8 activations */

/** An activation block for the fast (llama.cpp-style) path: f32 scale d, f32 sum s = d * sum(qs)
 *  (what q4_1's min term needs), 32 signed bytes; x ~= d * q. 40 bytes. */
typedef struct kvk_block_q8_act { float d; float s; int8_t qs[KVK_BLOCK]; } kvk_block_q8_act;

/** Quantizes n activations (n % 32 == 0) to q8_act blocks: d = max|x| / 127, q = roundf(x * (1 / d))
 *  (half away from zero, as ggml's reference q8 quantizers), s = d * sum(q); identical on every ISA. */
void kvk_quantize_act(const float *x, kvk_block_q8_act *out, size_t n);
/** y[r] = dot(W_r, xq) with exact integer block dot products and one f32 scale product per block
 *  (Q4_1: plus m * s); wt in Q8_0, Q4_0, Q4_1 (cols % 32 == 0). The fast decode path: quantize x once
 *  with kvk_quantize_act, then split rows across threads. */
void kvk_matvec_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                      float *y);
/** Batched form: Y[i][r] = dot(W_r, Xq[i]) for i in 0..<n, Xq rows of cols/32 blocks, Y row stride ldy. */
void kvk_matmul_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                      size_t n, float *y, size_t ldy);

/* Q4_1 and Q8_0 weights in four-row groups. GGUF keeps each row's blocks together, so an int8 kernel converts
 * and multiplies every row's f16 scales on its own; with four rows' scales side by side one conversion and one
 * multiply serve a whole group (as llama.cpp's CPU "repack" buffers do). */

/** 1 when the active ISA's kernel for weights packed by kvk_pack_rows4 beats its kernel for GGUF's layout
 *  (Q4_1 and Q8_0 on AVX2), else 0. Every ISA computes kvk_matmul_q8act_rows4 (others through the scalar
 *  reference), so packed weights stay valid when kvk_set_isa changes the ISA later. */
int kvk_rows4_preferred(kvk_type wt);
/** Copies a Q4_1 or Q8_0 matrix of `rows` rows of `cols` elements (cols % 32 == 0) from GGUF's layout at src
 *  into the four-row layout at dst (the same rows * kvk_row_bytes(wt, cols) bytes; no overlap): rows
 *  4g ..< 4g + 4 form group g at byte offset 4g * row_bytes, which holds per block b the four rows' headers
 *  (the f16 fields before the codes: d, m for Q4_1, d for Q8_0) in row order, then the four rows' codes
 *  (16 or 32 bytes) in row order. The last rows % 4 rows stay in GGUF's layout after the groups. So rows
 *  r0 ..< r1 of a packed matrix with r0 % 4 == 0, and r1 % 4 == 0 or r1 == rows, are themselves a packed
 *  matrix of r1 - r0 rows at dst + r0 * row_bytes. Returns 1; returns 0 and writes nothing for another wt. */
int kvk_pack_rows4(kvk_type wt, const void *src, size_t rows, size_t cols, void *dst);
/** kvk_matmul_q8act on a matrix in kvk_pack_rows4's layout: Y[i][r] = dot(W_r, Xq[i]) for i in 0..<n, Y row
 *  stride ldy; n == 1 is the decode matvec. Same integer block dot products; the f32 accumulation order
 *  differs from kvk_matmul_q8act by the usual rounding. Another wt (which kvk_pack_rows4 leaves in GGUF's
 *  layout) runs kvk_matmul_q8act. */
void kvk_matmul_q8act_rows4(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                            size_t n, float *y, size_t ldy);

/* ---------------------------------------------------------------- activations, norms, RoPE */

/** y[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]; y may equal x. */
void kvk_rmsnorm(const float *x, const float *weight, float *y, size_t n, float eps);
/** out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)); out may alias gate or up. */
void kvk_silu_mul(const float *gate, const float *up, float *out, size_t n);
/** In-place numerically stable softmax (subtracts the max); returns the sum of exp(x - max) before
 *  normalizing. Entries equal to -INFINITY get probability 0; if all are -INFINITY, all become 0 and
 *  0 is returned. The SIMD exp is accurate to a few ulp. */
float kvk_softmax(float *x, size_t n);
/** The exponentials of a softmax, for callers that merge partial softmaxes (online softmax over key
 *  tiles, decode attention over chunks): with M = max(*shift, max_i x[i]), x[i] = exp(x[i] - M),
 *  *shift = M, and the return value is sum_i x[i]. On entry *shift is a lower bound for the shift,
 *  e.g. a running max (-INFINITY for none; never NaN). M == -INFINITY (every entry -INFINITY and no
 *  bound): every x[i] becomes 0 and 0 is returned. kvk_softmax = this with no bound, then a scale. */
float kvk_softmax_unnormalized(float *x, size_t n, float *shift);

/** RoPE pairings. NEOX: dims i and i + d/2 form a pair ("rotate half", as HF Llama applies it to its
 *  own weights). NORM: dims 2i and 2i+1 form a pair (interleaved; what llama.cpp applies to GGUF llama
 *  weights, whose q/k rows the converter permuted so that both give the same attention scores). */
typedef enum kvk_rope_pairing { KVK_ROPE_NEOX = 0, KVK_ROPE_NORM = 1 } kvk_rope_pairing;

/** Rotates `rows` rows in place. Row r starts at x + r * row_stride (floats) and holds `heads`
 *  consecutive head vectors of length d, all rotated with position positions[r]:
 *  angle_i = positions[r] * inv_freq[i] for i < d/2, computed in f32 like HF (cos/sin of the f32 angle).
 *  NEOX: (x_i, x_{i+d/2}) -> (x_i cos - x_{i+d/2} sin, x_{i+d/2} cos + x_i sin). NORM uses (x_{2i}, x_{2i+1}). */
void kvk_rope(float *x, size_t rows, size_t heads, size_t d, size_t row_stride, const int32_t *positions,
              const float *inv_freq, kvk_rope_pairing pairing);

/* ---------------------------------------------------------------- synchronization helpers */

/* Tiny sequentially consistent atomics on a plain `long` (Swift: UnsafeMutablePointer<Int>) and a
 * spin-wait hint, for KVCore's ThreadPool (Swift's Synchronization.Atomic needs macOS 15). Not kernels. */
static inline long kvk_atomic_load(const long *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void kvk_atomic_store(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
/** Adds v and returns the previous value. */
static inline long kvk_atomic_fetch_add(long *p, long v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
/** Stores v and returns the previous value. */
static inline long kvk_atomic_exchange(long *p, long v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
/** If *p == expected, stores desired and returns 1; else returns 0. */
static inline int kvk_atomic_cas(long *p, long expected, long desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
/** A CPU hint for spin-wait loops (pause / yield). */
static inline void kvk_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

#ifdef __cplusplus
}
#endif

#endif /* CKVKERNELS_H */
