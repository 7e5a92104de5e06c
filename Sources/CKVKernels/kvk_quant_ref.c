/*
 * GGML-compatible block quantizers: the same arithmetic and rounding as ggml's reference
 * quantize_row_*_ref (independently written), so blocks we produce equal llama.cpp's byte for byte.
 * Shared by every ISA; the FMA contraction is off so no compiler fuses the steps differently.
 */
#pragma STDC FP_CONTRACT OFF
#include "kvk_internal.h"
#include <float.h>

void kvk_ref_quantize_q8_0(const float *x, kvk_block_q8_0 *y, size_t n) {
    for (size_t b = 0; b < n / KVK_BLOCK; b++, x += KVK_BLOCK) {
        float amax = 0.0f;
        for (int j = 0; j < KVK_BLOCK; j++) {
            float a = fabsf(x[j]);
            if (a > amax) amax = a;
        }
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvk_f2h(d);
        for (int j = 0; j < KVK_BLOCK; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void kvk_ref_quantize_q4_0(const float *x, kvk_block_q4_0 *y, size_t n) {
    for (size_t b = 0; b < n / KVK_BLOCK; b++, x += KVK_BLOCK) {
        /* the signed value of largest magnitude (first one on ties) maps to -8 */
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < KVK_BLOCK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); vmax = x[j]; }
        }
        const float d = vmax / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvk_f2h(d);
        for (int j = 0; j < KVK_BLOCK / 2; j++) {
            const float x0 = x[j] * id;
            const float x1 = x[j + KVK_BLOCK / 2] * id;
            int q0 = (int8_t)(x0 + 8.5f); /* truncation toward zero, as ggml */
            int q1 = (int8_t)(x1 + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void kvk_ref_quantize_q4_1(const float *x, kvk_block_q4_1 *y, size_t n) {
    for (size_t b = 0; b < n / KVK_BLOCK; b++, x += KVK_BLOCK) {
        float vmin = FLT_MAX, vmax = -FLT_MAX;
        for (int j = 0; j < KVK_BLOCK; j++) {
            if (x[j] < vmin) vmin = x[j];
            if (x[j] > vmax) vmax = x[j];
        }
        const float d = (vmax - vmin) / 15.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvk_f2h(d);
        y[b].m = kvk_f2h(vmin);
        for (int j = 0; j < KVK_BLOCK / 2; j++) {
            const float x0 = (x[j] - vmin) * id;
            const float x1 = (x[j + KVK_BLOCK / 2] - vmin) * id;
            int q0 = (int8_t)(x0 + 0.5f);
            int q1 = (int8_t)(x1 + 0.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void kvk_ref_quantize_q2_1(const float *x, kvk_block_q2_1 *y, size_t n) {
    for (size_t b = 0; b < n / KVK_BLOCK; b++, x += KVK_BLOCK) {
        float vmin = FLT_MAX, vmax = -FLT_MAX;
        for (int j = 0; j < KVK_BLOCK; j++) {
            if (x[j] < vmin) vmin = x[j];
            if (x[j] > vmax) vmax = x[j];
        }
        const float d = (vmax - vmin) / 3.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = kvk_f2h(d);
        y[b].m = kvk_f2h(vmin);
        memset(y[b].qs, 0, sizeof y[b].qs);
        for (int j = 0; j < KVK_BLOCK; j++) {
            int q = (int8_t)((x[j] - vmin) * id + 0.5f);
            if (q > 3) q = 3;
            y[b].qs[j % 8] |= (uint8_t)(q << (2 * (j / 8)));
        }
    }
}

/* ------------------------------------------------------------ KIVI key groups (every ISA) */

void kvk_kivi_quantize_keys(int bits, const float *src, size_t src_stride, size_t n, size_t d, void *codes,
                            size_t code_stride, uint16_t *params) {
    if (n == 0) return;
    const unsigned top = (1u << bits) - 1u;
    const size_t chunk_bytes = 4 * (size_t)bits;
    for (size_t r = 0; r < n; r++) memset((uint8_t *)codes + r * code_stride, 0, d * (size_t)bits / 8);
    for (size_t c = 0; c < d; c++) {
        float vmin = FLT_MAX, vmax = -FLT_MAX;
        for (size_t r = 0; r < n; r++) {
            const float x = src[r * src_stride + c];
            if (x < vmin) vmin = x;
            if (x > vmax) vmax = x;
        }
        /* codes against the stored fp16 min and scale, so that dequantizing undoes exactly these steps */
        const uint16_t mh = kvk_f2h(vmin);
        const float m = kvk_h2f(mh);
        const uint16_t sh = vmax > vmin && vmax > m ? kvk_f2h((vmax - m) / (float)top) : 0; /* constant: 0 */
        const float s = kvk_h2f(sh);
        const float inv = s > 0.0f ? 1.0f / s : 0.0f;
        params[c] = sh;
        params[d + c] = mh;
        const size_t base = c / KVK_BLOCK * chunk_bytes, e = c % KVK_BLOCK;
        const int shift = bits * (int)(e / chunk_bytes);
        for (size_t r = 0; r < n; r++) {
            float qf = roundf((src[r * src_stride + c] - m) * inv);
            unsigned q = qf <= 0.0f ? 0u : qf >= (float)top ? top : (unsigned)qf;
            ((uint8_t *)codes + r * code_stride)[base + e % chunk_bytes] |= (uint8_t)(q << shift);
        }
    }
}

void kvk_kivi_dequantize_key(int bits, const void *codes, const uint16_t *params, size_t d, float *out) {
    for (size_t c = 0; c < d; c++)
        out[c] = kvk_h2f(params[c]) * (float)kvk_code_at((const uint8_t *)codes, bits, c) + kvk_h2f(params[d + c]);
}
