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
