/*
 * Portable scalar C implementation of every kernel: the reference path (KVK_FORCE_SCALAR=1) and the
 * fallback on CPUs without a SIMD table.
 */
#include "kvk_internal.h"

/* ------------------------------------------------------------ basic f32 */

float kvk_scalar_dot_f32(const float *a, const float *b, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void kvk_scalar_axpy_f32(float alpha, const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void kvk_scalar_scale_f32(float alpha, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= alpha;
}

float kvk_scalar_sum_f32(const float *x, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

/* ------------------------------------------------------------ conversion */

void kvk_scalar_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = kvk_h2f(src[i]);
}
void kvk_scalar_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = kvk_f2h(src[i]);
}
void kvk_scalar_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = kvk_bf2f(src[i]);
}
void kvk_scalar_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = kvk_f2bf(src[i]);
}

void kvk_scalar_quantize(kvk_type t, const float *src, void *dst, size_t n) {
    switch (t) {
    case KVK_F32: memmove(dst, src, n * sizeof(float)); break;
    case KVK_F16: kvk_scalar_f32_to_f16(src, (uint16_t *)dst, n); break;
    case KVK_BF16: kvk_scalar_f32_to_bf16(src, (uint16_t *)dst, n); break;
    case KVK_Q8_0: kvk_ref_quantize_q8_0(src, (kvk_block_q8_0 *)dst, n); break;
    case KVK_Q4_0: kvk_ref_quantize_q4_0(src, (kvk_block_q4_0 *)dst, n); break;
    case KVK_Q4_1: kvk_ref_quantize_q4_1(src, (kvk_block_q4_1 *)dst, n); break;
    case KVK_Q2_1: kvk_ref_quantize_q2_1(src, (kvk_block_q2_1 *)dst, n); break;
    }
}

void kvk_scalar_dequantize(kvk_type t, const void *src, float *dst, size_t n) {
    switch (t) {
    case KVK_F32: memmove(dst, src, n * sizeof(float)); break;
    case KVK_F16: kvk_scalar_f16_to_f32((const uint16_t *)src, dst, n); break;
    case KVK_BF16: kvk_scalar_bf16_to_f32((const uint16_t *)src, dst, n); break;
    case KVK_Q8_0: {
        const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)src;
        for (size_t k = 0; k < n / KVK_BLOCK; k++) {
            const float d = kvk_h2f(b[k].d);
            for (int j = 0; j < KVK_BLOCK; j++) dst[k * KVK_BLOCK + j] = d * (float)b[k].qs[j];
        }
        break;
    }
    case KVK_Q4_0: {
        const kvk_block_q4_0 *b = (const kvk_block_q4_0 *)src;
        for (size_t k = 0; k < n / KVK_BLOCK; k++) {
            const float d = kvk_h2f(b[k].d);
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                dst[k * KVK_BLOCK + j] = d * (float)((int)(b[k].qs[j] & 0x0f) - 8);
                dst[k * KVK_BLOCK + j + 16] = d * (float)((int)(b[k].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    case KVK_Q4_1: {
        const kvk_block_q4_1 *b = (const kvk_block_q4_1 *)src;
        for (size_t k = 0; k < n / KVK_BLOCK; k++) {
            const float d = kvk_h2f(b[k].d), m = kvk_h2f(b[k].m);
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                dst[k * KVK_BLOCK + j] = d * (float)(b[k].qs[j] & 0x0f) + m;
                dst[k * KVK_BLOCK + j + 16] = d * (float)(b[k].qs[j] >> 4) + m;
            }
        }
        break;
    }
    case KVK_Q2_1: {
        const kvk_block_q2_1 *b = (const kvk_block_q2_1 *)src;
        for (size_t k = 0; k < n / KVK_BLOCK; k++) {
            const float d = kvk_h2f(b[k].d), m = kvk_h2f(b[k].m);
            for (int j = 0; j < KVK_BLOCK; j++) dst[k * KVK_BLOCK + j] = d * (float)kvk_code_at(b[k].qs, 2, (size_t)j) + m;
        }
        break;
    }
    }
}

/* dot(row of type t with n elements, x) */
static float row_dot(kvk_type t, const void *row, const float *x, size_t n) {
    float s = 0.0f;
    switch (t) {
    case KVK_F32: return kvk_scalar_dot_f32((const float *)row, x, n);
    case KVK_F16: {
        const uint16_t *r = (const uint16_t *)row;
        for (size_t i = 0; i < n; i++) s += kvk_h2f(r[i]) * x[i];
        return s;
    }
    case KVK_BF16: {
        const uint16_t *r = (const uint16_t *)row;
        for (size_t i = 0; i < n; i++) s += kvk_bf2f(r[i]) * x[i];
        return s;
    }
    case KVK_Q8_0: {
        const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, x += KVK_BLOCK) {
            float p = 0.0f;
            for (int j = 0; j < KVK_BLOCK; j++) p += (float)b[k].qs[j] * x[j];
            s += kvk_h2f(b[k].d) * p;
        }
        return s;
    }
    case KVK_Q4_0: {
        const kvk_block_q4_0 *b = (const kvk_block_q4_0 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, x += KVK_BLOCK) {
            float p = 0.0f;
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                p += (float)((int)(b[k].qs[j] & 0x0f) - 8) * x[j];
                p += (float)((int)(b[k].qs[j] >> 4) - 8) * x[j + 16];
            }
            s += kvk_h2f(b[k].d) * p;
        }
        return s;
    }
    case KVK_Q4_1: {
        const kvk_block_q4_1 *b = (const kvk_block_q4_1 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, x += KVK_BLOCK) {
            float p = 0.0f, sx = 0.0f;
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                p += (float)(b[k].qs[j] & 0x0f) * x[j];
                p += (float)(b[k].qs[j] >> 4) * x[j + 16];
                sx += x[j] + x[j + 16];
            }
            s += kvk_h2f(b[k].d) * p + kvk_h2f(b[k].m) * sx;
        }
        return s;
    }
    case KVK_Q2_1: {
        const kvk_block_q2_1 *b = (const kvk_block_q2_1 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, x += KVK_BLOCK) {
            float p = 0.0f, sx = 0.0f;
            for (int j = 0; j < KVK_BLOCK; j++) {
                p += (float)kvk_code_at(b[k].qs, 2, (size_t)j) * x[j];
                sx += x[j];
            }
            s += kvk_h2f(b[k].d) * p + kvk_h2f(b[k].m) * sx;
        }
        return s;
    }
    }
    return 0.0f;
}

/* y[i] += a * row[i] for a row of type t */
static void row_axpy(kvk_type t, float a, const void *row, float *y, size_t n) {
    switch (t) {
    case KVK_F32: kvk_scalar_axpy_f32(a, (const float *)row, y, n); return;
    case KVK_F16: {
        const uint16_t *r = (const uint16_t *)row;
        for (size_t i = 0; i < n; i++) y[i] += a * kvk_h2f(r[i]);
        return;
    }
    case KVK_BF16: {
        const uint16_t *r = (const uint16_t *)row;
        for (size_t i = 0; i < n; i++) y[i] += a * kvk_bf2f(r[i]);
        return;
    }
    case KVK_Q8_0: {
        const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, y += KVK_BLOCK) {
            const float ad = a * kvk_h2f(b[k].d);
            for (int j = 0; j < KVK_BLOCK; j++) y[j] += ad * (float)b[k].qs[j];
        }
        return;
    }
    case KVK_Q4_0: {
        const kvk_block_q4_0 *b = (const kvk_block_q4_0 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, y += KVK_BLOCK) {
            const float ad = a * kvk_h2f(b[k].d);
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                y[j] += ad * (float)((int)(b[k].qs[j] & 0x0f) - 8);
                y[j + 16] += ad * (float)((int)(b[k].qs[j] >> 4) - 8);
            }
        }
        return;
    }
    case KVK_Q4_1: {
        const kvk_block_q4_1 *b = (const kvk_block_q4_1 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, y += KVK_BLOCK) {
            const float ad = a * kvk_h2f(b[k].d), am = a * kvk_h2f(b[k].m);
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                y[j] += ad * (float)(b[k].qs[j] & 0x0f) + am;
                y[j + 16] += ad * (float)(b[k].qs[j] >> 4) + am;
            }
        }
        return;
    }
    case KVK_Q2_1: {
        const kvk_block_q2_1 *b = (const kvk_block_q2_1 *)row;
        for (size_t k = 0; k < n / KVK_BLOCK; k++, y += KVK_BLOCK) {
            const float ad = a * kvk_h2f(b[k].d), am = a * kvk_h2f(b[k].m);
            for (int j = 0; j < KVK_BLOCK; j++) y[j] += ad * (float)kvk_code_at(b[k].qs, 2, (size_t)j) + am;
        }
        return;
    }
    }
}

/* ------------------------------------------------------------ attention building blocks */

void kvk_scalar_scores(kvk_type t, const float *q, const void *keys, size_t key_stride, size_t n, size_t d,
                       float scale, float *out) {
    const char *k = (const char *)keys;
    for (size_t j = 0; j < n; j++) out[j] = scale * row_dot(t, k + j * key_stride, q, d);
}

void kvk_scalar_weighted_sum(kvk_type t, const float *w, const void *values, size_t value_stride, size_t n,
                             size_t d, float *out) {
    const char *v = (const char *)values;
    for (size_t j = 0; j < n; j++) row_axpy(t, w[j], v + j * value_stride, out, d);
}

void kvk_scalar_scores_multi(kvk_type t, const float *q, size_t q_stride, size_t m, const void *keys,
                             size_t key_stride, size_t n, size_t d, float scale, float *out, size_t out_stride) {
    for (size_t h = 0; h < m; h++) kvk_scalar_scores(t, q + h * q_stride, keys, key_stride, n, d, scale, out + h * out_stride);
}

void kvk_scalar_weighted_sum_multi(kvk_type t, const float *w, size_t w_stride, size_t m, const void *values,
                                   size_t value_stride, size_t n, size_t d, float *out, size_t out_stride) {
    for (size_t h = 0; h < m; h++)
        kvk_scalar_weighted_sum(t, w + h * w_stride, values, value_stride, n, d, out + h * out_stride);
}

/* KIVI keys: with q' = q * scale_vec and b = dot(q, min_vec), a score is dot(q', codes) + b. */
void kvk_scalar_kivi_scores_multi(int bits, const float *q, size_t q_stride, size_t m, const void *codes,
                                  size_t code_stride, const uint16_t *params, size_t n, size_t d, float scale,
                                  float *out, size_t out_stride) {
    for (size_t h = 0; h < m; h++) {
        const float *qh = q + h * q_stride;
        float bias = 0.0f;
        for (size_t c = 0; c < d; c++) bias += qh[c] * kvk_h2f(params[d + c]);
        for (size_t j = 0; j < n; j++) {
            const uint8_t *row = (const uint8_t *)codes + j * code_stride;
            float s = 0.0f;
            for (size_t c = 0; c < d; c++) s += qh[c] * kvk_h2f(params[c]) * (float)kvk_code_at(row, bits, c);
            out[h * out_stride + j] = scale * (s + bias);
        }
    }
}

/* ------------------------------------------------------------ matrix products */

void kvk_scalar_matvec(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, float *y) {
    const size_t rb = kvk_row_bytes(wt, cols);
    for (size_t r = 0; r < rows; r++) y[r] = row_dot(wt, (const char *)w + r * rb, x, cols);
}

void kvk_scalar_matmul(kvk_type wt, const void *w, size_t rows, size_t cols, const float *x, size_t n,
                       float *y, size_t ldy) {
    const size_t rb = kvk_row_bytes(wt, cols);
    for (size_t r = 0; r < rows; r++) {
        const void *row = (const char *)w + r * rb;
        for (size_t i = 0; i < n; i++) y[i * ldy + r] = row_dot(wt, row, x + i * cols, cols);
    }
}

/* ------------------------------------------------------------ int8 activations */

void kvk_scalar_quantize_act(const float *x, kvk_block_q8_act *out, size_t n) {
    for (size_t b = 0; b < n / KVK_BLOCK; b++, x += KVK_BLOCK) {
        float amax = 0.0f;
        for (int j = 0; j < KVK_BLOCK; j++) {
            float a = fabsf(x[j]);
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < KVK_BLOCK; j++) {
            const int q = (int)roundf(x[j] * id);
            out[b].qs[j] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].s = d * (float)sum;
    }
}

static float row_dot_q8act(kvk_type t, const void *row, const kvk_block_q8_act *xq, size_t nb) {
    float s = 0.0f;
    switch (t) {
    case KVK_Q8_0: {
        const kvk_block_q8_0 *b = (const kvk_block_q8_0 *)row;
        for (size_t k = 0; k < nb; k++) {
            int p = 0;
            for (int j = 0; j < KVK_BLOCK; j++) p += (int)b[k].qs[j] * (int)xq[k].qs[j];
            s += kvk_h2f(b[k].d) * xq[k].d * (float)p;
        }
        return s;
    }
    case KVK_Q4_0: {
        const kvk_block_q4_0 *b = (const kvk_block_q4_0 *)row;
        for (size_t k = 0; k < nb; k++) {
            int p = 0;
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                p += ((int)(b[k].qs[j] & 0x0f) - 8) * (int)xq[k].qs[j];
                p += ((int)(b[k].qs[j] >> 4) - 8) * (int)xq[k].qs[j + 16];
            }
            s += kvk_h2f(b[k].d) * xq[k].d * (float)p;
        }
        return s;
    }
    case KVK_Q4_1: {
        const kvk_block_q4_1 *b = (const kvk_block_q4_1 *)row;
        for (size_t k = 0; k < nb; k++) {
            int p = 0;
            for (int j = 0; j < KVK_BLOCK / 2; j++) {
                p += (int)(b[k].qs[j] & 0x0f) * (int)xq[k].qs[j];
                p += (int)(b[k].qs[j] >> 4) * (int)xq[k].qs[j + 16];
            }
            s += kvk_h2f(b[k].d) * xq[k].d * (float)p + kvk_h2f(b[k].m) * xq[k].s;
        }
        return s;
    }
    default: return 0.0f; /* other weight types are not supported on this path */
    }
}

void kvk_scalar_matvec_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                             float *y) {
    const size_t rb = kvk_row_bytes(wt, cols), nb = cols / KVK_BLOCK;
    for (size_t r = 0; r < rows; r++) y[r] = row_dot_q8act(wt, (const char *)w + r * rb, xq, nb);
}

void kvk_scalar_matmul_q8act(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                             size_t n, float *y, size_t ldy) {
    const size_t rb = kvk_row_bytes(wt, cols), nb = cols / KVK_BLOCK;
    for (size_t r = 0; r < rows; r++) {
        const void *row = (const char *)w + r * rb;
        for (size_t i = 0; i < n; i++) y[i * ldy + r] = row_dot_q8act(wt, row, xq + i * nb, nb);
    }
}

/* kvk_pack_rows4's block parts: header bytes (the f16 fields before the codes) and code bytes; 0 for types
 * without a packed layout. */
static size_t rows4_header_bytes(kvk_type t) { return t == KVK_Q4_1 ? 4 : t == KVK_Q8_0 ? 2 : 0; }

int kvk_pack_rows4(kvk_type wt, const void *src, size_t rows, size_t cols, void *dst) {
    const size_t hs = rows4_header_bytes(wt);
    if (hs == 0) return 0;
    const size_t rb = kvk_row_bytes(wt, cols), nb = cols / KVK_BLOCK, groups = rows / 4;
    const size_t bs = kvk_row_bytes(wt, KVK_BLOCK);
    for (size_t g = 0; g < groups; g++)
        for (size_t b = 0; b < nb; b++) {
            char *o = (char *)dst + g * 4 * rb + b * 4 * bs;
            for (int r = 0; r < 4; r++) {
                const char *blk = (const char *)src + (4 * g + r) * rb + b * bs;
                memcpy(o + hs * r, blk, hs);
                memcpy(o + 4 * hs + (bs - hs) * r, blk + hs, bs - hs);
            }
        }
    memcpy((char *)dst + groups * 4 * rb, (const char *)src + groups * 4 * rb, (rows - groups * 4) * rb);
    return 1;
}

void kvk_scalar_matmul_q8act_rows4(kvk_type wt, const void *w, size_t rows, size_t cols, const kvk_block_q8_act *xq,
                                   size_t n, float *y, size_t ldy) {
    const size_t hs = rows4_header_bytes(wt);
    if (hs == 0) {
        kvk_scalar_matmul_q8act(wt, w, rows, cols, xq, n, y, ldy);
        return;
    }
    const size_t rb = kvk_row_bytes(wt, cols), nb = cols / KVK_BLOCK, full = rows / 4 * 4;
    const size_t bs = kvk_row_bytes(wt, KVK_BLOCK);
    union { kvk_block_q8_0 q8_0; kvk_block_q4_1 q4_1; char bytes[sizeof(kvk_block_q8_0)]; } blk;
    for (size_t r = 0; r < full; r++) {
        const char *group = (const char *)w + (r / 4) * 4 * rb;
        for (size_t i = 0; i < n; i++) {
            float s = 0.0f;
            for (size_t b = 0; b < nb; b++) { /* block b of row r % 4 reassembled in GGUF's layout */
                const char *o = group + b * 4 * bs;
                memcpy(blk.bytes, o + hs * (r % 4), hs);
                memcpy(blk.bytes + hs, o + 4 * hs + (bs - hs) * (r % 4), bs - hs);
                s += row_dot_q8act(wt, &blk, xq + i * nb + b, 1);
            }
            y[i * ldy + r] = s;
        }
    }
    kvk_scalar_matmul_q8act(wt, (const char *)w + full * rb, rows - full, cols, xq, n, y + full, ldy);
}

/* ------------------------------------------------------------ activations, norms, RoPE */

void kvk_scalar_rmsnorm(const float *x, const float *weight, float *y, size_t n, float eps) {
    if (n == 0) return;
    float ss = 0.0f;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = x[i] * inv * weight[i];
}

void kvk_scalar_silu_mul(const float *gate, const float *up, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

float kvk_scalar_softmax_unnormalized(float *x, size_t n, float *shift) {
    float mx = *shift;
    for (size_t i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    *shift = mx;
    if (mx == -INFINITY) { /* empty or everything masked: all weights 0 */
        for (size_t i = 0; i < n; i++) x[i] = 0.0f;
        return 0.0f;
    }
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) {
        const float e = expf(x[i] - mx);
        x[i] = e;
        s += e;
    }
    return s;
}

void kvk_scalar_rope(float *x, size_t rows, size_t heads, size_t d, size_t row_stride, const int32_t *positions,
                     const float *inv_freq, kvk_rope_pairing pairing) {
    const size_t half = d / 2;
    for (size_t r = 0; r < rows; r++) {
        const float p = (float)positions[r];
        float *row = x + r * row_stride;
        for (size_t i = 0; i < half; i++) {
            const float angle = p * inv_freq[i];
            const float c = cosf(angle), s = sinf(angle);
            for (size_t h = 0; h < heads; h++) {
                float *v = row + h * d;
                const size_t i0 = pairing == KVK_ROPE_NEOX ? i : 2 * i;
                const size_t i1 = pairing == KVK_ROPE_NEOX ? i + half : 2 * i + 1;
                const float a = v[i0], b = v[i1];
                v[i0] = a * c - b * s;
                v[i1] = b * c + a * s;
            }
        }
    }
}

const kvk_ops kvk_ops_scalar = {
    .isa = KVK_ISA_SCALAR,
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
    .scores_multi = kvk_scalar_scores_multi,
    .weighted_sum_multi = kvk_scalar_weighted_sum_multi,
    .kivi_scores_multi = kvk_scalar_kivi_scores_multi,
    .matvec = kvk_scalar_matvec,
    .matmul = kvk_scalar_matmul,
    .quantize_act = kvk_scalar_quantize_act,
    .matvec_q8act = kvk_scalar_matvec_q8act,
    .matmul_q8act = kvk_scalar_matmul_q8act,
    .rmsnorm = kvk_scalar_rmsnorm,
    .silu_mul = kvk_scalar_silu_mul,
    .softmax_unnormalized = kvk_scalar_softmax_unnormalized,
    .rope = kvk_scalar_rope,
};
