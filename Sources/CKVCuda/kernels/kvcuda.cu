// KVCompress CUDA kernels. Compiled to PTX by Scripts/build_ptx.py (NVRTC, compute_80) into
// ../kvcu_ptx.c, which CKVCuda embeds and loads through the driver API at run time. The same file
// compiles as C++ on the CPU with KVCU_EMULATE (Tests/CudaEmulation/), which runs every kernel
// thread by thread against a double-precision reference, so the indexing is tested on any machine.
//
// Uses no CUDA headers: element types are GGUF / CKVKernels type ids, half and bfloat16 are
// converted by bit manipulation, and the only synchronization is __syncthreads over shared memory.

#ifdef KVCU_EMULATE
#include "kvcuda_emulate.hpp"
#else
#define KVCU_INFINITY __int_as_float(0x7f800000)
#endif

#include "kvcu_abi.h"

// ------------------------------------------------------------------------------ element access

__device__ static float kvcu_h2f(unsigned short h) {
    unsigned int sign = (unsigned int)(h & 0x8000) << 16;
    unsigned int exponent = (h >> 10) & 0x1f;
    unsigned int mantissa = h & 0x3ff;
    unsigned int bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {  // subnormal: value = mantissa * 2^-24
        float v = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return __int_as_float((int)bits);
}

__device__ static float kvcu_bf2f(unsigned short h) { return __int_as_float((int)((unsigned int)h << 16)); }

__device__ static unsigned short kvcu_u16(const unsigned char *p) {
    return (unsigned short)(p[0] | (p[1] << 8));
}

/// Element c of a row of `type` (GGUF block layouts, 32 elements per block).
__device__ static float kvcu_load(int type, const unsigned char *row, int c) {
    switch (type) {
    case KVCU_F32: return ((const float *)row)[c];
    case KVCU_F16: return kvcu_h2f(((const unsigned short *)row)[c]);
    case KVCU_BF16: return kvcu_bf2f(((const unsigned short *)row)[c]);
    case KVCU_Q8_0: {
        const unsigned char *b = row + (c >> 5) * 34;
        return kvcu_h2f(kvcu_u16(b)) * (float)(signed char)b[2 + (c & 31)];
    }
    case KVCU_Q4_0: {
        const unsigned char *b = row + (c >> 5) * 18;
        int i = c & 31;
        int q = i < 16 ? (b[2 + i] & 15) : (b[2 + i - 16] >> 4);
        return kvcu_h2f(kvcu_u16(b)) * (float)(q - 8);
    }
    case KVCU_Q4_1: {
        const unsigned char *b = row + (c >> 5) * 20;
        int i = c & 31;
        int q = i < 16 ? (b[4 + i] & 15) : (b[4 + i - 16] >> 4);
        return kvcu_h2f(kvcu_u16(b)) * (float)q + kvcu_h2f(kvcu_u16(b + 2));
    }
    case KVCU_Q2_1: {
        const unsigned char *b = row + (c >> 5) * 12;
        int i = c & 31;
        int q = (b[4 + (i & 7)] >> (2 * (i >> 3))) & 3;
        return kvcu_h2f(kvcu_u16(b)) * (float)q + kvcu_h2f(kvcu_u16(b + 2));
    }
    default: return 0.0f;
    }
}

/// Elements c0 ..< c0 + 8 of a row (c0 a multiple of 8): one 16-byte load for f16 / bf16 rows,
/// two for f32 (rows are 16-byte aligned: the host checks), element by element for blocks.
__device__ static void kvcu_load8(int type, const unsigned char *row, int c0, float *out) {
    if (type == KVCU_F16 || type == KVCU_BF16) {
        uint4 w = *(const uint4 *)(row + 2 * c0);
        unsigned int words[4] = {w.x, w.y, w.z, w.w};
        for (int i = 0; i < 4; i++) {
            unsigned short lo = (unsigned short)(words[i] & 0xffff), hi = (unsigned short)(words[i] >> 16);
            out[2 * i] = type == KVCU_F16 ? kvcu_h2f(lo) : kvcu_bf2f(lo);
            out[2 * i + 1] = type == KVCU_F16 ? kvcu_h2f(hi) : kvcu_bf2f(hi);
        }
    } else if (type == KVCU_F32) {
        float4 a = *(const float4 *)(row + 4 * c0), b = *(const float4 *)(row + 4 * c0 + 16);
        out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
        out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
    } else {
        for (int i = 0; i < 8; i++) out[i] = kvcu_load(type, row, c0 + i);
    }
}

__device__ static float kvcu_log_count(const kvcu_segment *s, int row) {
    return s->log_counts ? ((const float *)s->log_counts)[row] : 0.0f;
}

// ------------------------------------------------------------------------------ decode

/// Decode attention, first pass: one block per work item (a run of at most KVCU_CHUNK rows of one
/// segment). For each query head of the segment's GQA group: the item's softmax max, sum of
/// exp(s - max), and the weighted sum of value rows with weights exp(s - max), written to
/// `partials[(item * g + h) * (d + 2)]` as (max, sum, acc[d]); with `scores`, the logits s too, at
/// `scores[(item * g + h) * KVCU_CHUNK + j]`.
extern "C" __global__ void kvcu_decode_partial(const kvcu_segment *segments, const kvcu_item *items,
                                               const float *query, int g, int d, float scale,
                                               float *partials, float *scores) {
    __shared__ float q[KVCU_MAXG * KVCU_MAXD];
    __shared__ float p[KVCU_MAXG * KVCU_CHUNK];
    __shared__ float red[KVCU_MAXG * 16];
    __shared__ float stat[2 * KVCU_MAXG];
    __shared__ float acc[KVCU_MAXG * KVCU_MAXD];  // rowGroups * g * d floats

    const int tid = threadIdx.x;
    const kvcu_item item = items[blockIdx.x];
    const kvcu_segment *seg = segments + item.segment;
    const int n = item.end - item.start;
    const float *qh = query + seg->head * g * d;
    for (int i = tid; i < g * d; i += KVCU_THREADS) q[i] = qh[i];
    __syncthreads();

    // Scores: one row per thread.
    for (int j = tid; j < n; j += KVCU_THREADS) {
        const int row = item.start + j;
        const unsigned char *k = (const unsigned char *)seg->keys + (long long)row * seg->key_stride;
        float dot[KVCU_MAXG];
        for (int h = 0; h < g; h++) dot[h] = 0.0f;
        for (int c0 = 0; c0 < d; c0 += 8) {
            float x[8];
            kvcu_load8(seg->key_type, k, c0, x);
            for (int h = 0; h < g; h++) {
                const float *qq = q + h * d + c0;
                dot[h] += x[0] * qq[0] + x[1] * qq[1] + x[2] * qq[2] + x[3] * qq[3] +
                          x[4] * qq[4] + x[5] * qq[5] + x[6] * qq[6] + x[7] * qq[7];
            }
        }
        const float lc = kvcu_log_count(seg, row);
        for (int h = 0; h < g; h++) p[h * KVCU_CHUNK + j] = dot[h] * scale + lc;
    }
    __syncthreads();
    if (scores) {
        for (int i = tid; i < g * n; i += KVCU_THREADS)
            scores[((long long)blockIdx.x * g + i / n) * KVCU_CHUNK + i % n] = p[(i / n) * KVCU_CHUNK + i % n];
    }

    // Max and sum per query head: 16 threads per head, then one thread per head.
    const int rh = tid / 16, rl = tid % 16;
    if (rh < g) {
        float m = -KVCU_INFINITY;
        for (int j = rl; j < n; j += 16) m = fmaxf(m, p[rh * KVCU_CHUNK + j]);
        red[rh * 16 + rl] = m;
    }
    __syncthreads();
    if (tid < g) {
        float m = -KVCU_INFINITY;
        for (int i = 0; i < 16; i++) m = fmaxf(m, red[tid * 16 + i]);
        stat[tid] = m;
    }
    __syncthreads();
    for (int i = tid; i < g * n; i += KVCU_THREADS) {
        const int h = i / n, j = i % n;
        const float m = stat[h];
        p[h * KVCU_CHUNK + j] = m == -KVCU_INFINITY ? 0.0f : expf(p[h * KVCU_CHUNK + j] - m);
    }
    __syncthreads();
    if (rh < g) {
        float s = 0.0f;
        for (int j = rl; j < n; j += 16) s += p[rh * KVCU_CHUNK + j];
        red[rh * 16 + rl] = s;
    }
    __syncthreads();
    if (tid < g) {
        float s = 0.0f;
        for (int i = 0; i < 16; i++) s += red[tid * 16 + i];
        stat[KVCU_MAXG + tid] = s;
    }

    // Weighted sums: `lanes` = min(d, threads) channels side by side (each thread takes channels
    // l and l + lanes), `rowGroups` groups of rows; threads past rowGroups * lanes only help reduce.
    const int lanes = d < KVCU_THREADS ? d : KVCU_THREADS;
    const int rowGroups = KVCU_THREADS / lanes;
    const int r = tid / lanes, l = tid % lanes;
    if (r < rowGroups) {
        float a[KVCU_MAXG][2];
        for (int h = 0; h < KVCU_MAXG; h++) { a[h][0] = 0.0f; a[h][1] = 0.0f; }
        for (int j = r; j < n; j += rowGroups) {
            const unsigned char *v = (const unsigned char *)seg->values + (long long)(item.start + j) * seg->value_stride;
            for (int k = 0; k < 2; k++) {
                const int c = l + k * lanes;
                if (c >= d) break;
                const float x = kvcu_load(seg->value_type, v, c);
                for (int h = 0; h < g; h++) a[h][k] += p[h * KVCU_CHUNK + j] * x;
            }
        }
        for (int h = 0; h < g; h++)
            for (int k = 0; k < 2 && l + k * lanes < d; k++) acc[(r * g + h) * d + l + k * lanes] = a[h][k];
    }
    __syncthreads();
    for (int i = tid; i < g * d; i += KVCU_THREADS) {
        const int h = i / d, c = i % d;
        float s = 0.0f;
        for (int rr = 0; rr < rowGroups; rr++) s += acc[(rr * g + h) * d + c];
        float *out = partials + ((long long)blockIdx.x * g + h) * (d + 2);
        out[2 + c] = s;
        if (c == 0) { out[0] = stat[h]; out[1] = stat[KVCU_MAXG + h]; }
    }
}

/// Decode attention, second pass: one block per query head merges the partial results of its KV
/// head's items (`item_first[m] ..< item_first[m + 1]`) exactly (log-sum-exp). Writes
/// `output[h * d + c]` (zeros for a head with no rows) and, with `lse`, log(sum exp(s)) per head
/// (-inf with no rows).
extern "C" __global__ void kvcu_decode_merge(const int *item_first, int g, int d, const float *partials,
                                             float *output, float *lse) {
    const int h = blockIdx.x, m = h / g, hh = h % g;
    const int first = item_first[m], last = item_first[m + 1];
    float globalMax = -KVCU_INFINITY;
    for (int i = first; i < last; i++) globalMax = fmaxf(globalMax, partials[((long long)i * g + hh) * (d + 2)]);
    float total = 0.0f;
    if (globalMax > -KVCU_INFINITY) {
        for (int i = first; i < last; i++) {
            const float *part = partials + ((long long)i * g + hh) * (d + 2);
            if (part[0] > -KVCU_INFINITY) total += expf(part[0] - globalMax) * part[1];
        }
    }
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float s = 0.0f;
        if (total > 0.0f) {
            for (int i = first; i < last; i++) {
                const float *part = partials + ((long long)i * g + hh) * (d + 2);
                if (part[0] > -KVCU_INFINITY) s += expf(part[0] - globalMax) * part[2 + c];
            }
            s /= total;
        }
        output[h * d + c] = s;
    }
    if (lse && threadIdx.x == 0) lse[h] = total > 0.0f ? globalMax + logf(total) : -KVCU_INFINITY;
}

/// Decode column sums: for KV head m and head row j, the sum over the query heads of group m of
/// their probability of row j, `sums[m * stride + row]` (rows numbered across a head's segments by
/// `first_row`); needs the logits `kvcu_decode_partial` wrote and the merged `lse`.
extern "C" __global__ void kvcu_decode_column_sums(const kvcu_segment *segments, const kvcu_item *items, int g,
                                                   const float *scores, const float *lse, float *sums,
                                                   int stride) {
    const kvcu_item item = items[blockIdx.x];
    const kvcu_segment *seg = segments + item.segment;
    const int n = item.end - item.start;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        float s = 0.0f;
        for (int h = 0; h < g; h++) {
            const float l = lse[seg->head * g + h];
            if (l > -KVCU_INFINITY) s += expf(scores[((long long)blockIdx.x * g + h) * KVCU_CHUNK + j] - l);
        }
        sums[(long long)seg->head * stride + seg->first_row + item.start + j] = s;
    }
}

// ------------------------------------------------------------------------------ prefill

/// Loads rows k0 ..< k0 + KVCU_TILE of a segment into a tile of f32 rows (d floats apart), with
/// their positions and log counts; rows past the segment get position INT_MAX (always masked).
__device__ static void kvcu_load_tile(const kvcu_segment *seg, int k0, int d, int keys, float *tile, int *pos,
                                      float *logc) {
    const int tid = threadIdx.x;
    const int type = keys ? seg->key_type : seg->value_type;
    const int stride = keys ? seg->key_stride : seg->value_stride;
    const unsigned char *base = (const unsigned char *)(keys ? seg->keys : seg->values);
    for (int i = tid; i < KVCU_TILE * (d / 8); i += blockDim.x) {
        const int k = i / (d / 8), c0 = (i % (d / 8)) * 8;
        float *dst = tile + k * d + c0;
        if (k0 + k < seg->count) {
            kvcu_load8(type, base + (long long)(k0 + k) * stride, c0, dst);
        } else {
            for (int c = 0; c < 8; c++) dst[c] = 0.0f;
        }
    }
    if (pos && tid < KVCU_TILE) {
        const int row = k0 + tid;
        pos[tid] = row < seg->count ? ((const int *)seg->positions)[row] : 0x7fffffff;
        logc[tid] = row < seg->count ? kvcu_log_count(seg, row) : 0.0f;
    }
}

/// Causal prefill attention: one block per (tile of KVCU_TILE query tokens, query head), an
/// online softmax over tiles of KVCU_TILE rows of each segment of the head's KV head; key j is
/// visible to query t iff position(j) <= query_positions[t]. Writes
/// `output[(t * heads + h) * d + c]` (zeros for a query that sees no row) and, with `lse`,
/// `lse[t * heads + h]` (log-sum-exp of the logits; -inf when none is visible). Needs d <= 128.
extern "C" __global__ void kvcu_prefill(const kvcu_segment *segments, const int *segment_first,
                                        const float *queries, int query_count, int query_stride,
                                        const int *query_positions, int heads, int g, int d, float scale,
                                        float *output, float *lse) {
    __shared__ float qs[KVCU_TILE * KVCU_PMAXD];
    __shared__ float kv[KVCU_TILE * KVCU_PMAXD];
    __shared__ float sp[KVCU_TILE * KVCU_TILE];
    __shared__ float red[KVCU_TILE * 4];
    __shared__ int kpos[KVCU_TILE];
    __shared__ float klog[KVCU_TILE];
    __shared__ int qpos[KVCU_TILE];

    const int tid = threadIdx.x;  // 128 threads: query row r = tid / 4, quarter qq = tid % 4
    const int h = blockIdx.y, m = h / g;
    const int t0 = blockIdx.x * KVCU_TILE;
    const int r = tid / 4, qq = tid % 4;
    const int cw = d / 4;  // channels per thread in the output
    for (int i = tid; i < KVCU_TILE * d; i += blockDim.x) {
        const int t = i / d, c = i % d;
        qs[i] = t0 + t < query_count ? queries[(long long)(t0 + t) * query_stride + h * d + c] : 0.0f;
    }
    if (tid < KVCU_TILE) qpos[tid] = t0 + tid < query_count ? query_positions[t0 + tid] : -1;
    __syncthreads();
    int lastPos = -1;
    for (int t = 0; t < KVCU_TILE; t++) lastPos = qpos[t] > lastPos ? qpos[t] : lastPos;
    const int myPos = qpos[r];

    float runMax = -KVCU_INFINITY, runSum = 0.0f;
    float acc[KVCU_PMAXD / 4];
    for (int c = 0; c < cw; c++) acc[c] = 0.0f;

    for (int sIndex = segment_first[m]; sIndex < segment_first[m + 1]; sIndex++) {
        const kvcu_segment *seg = segments + sIndex;
        for (int k0 = 0; k0 < seg->count; k0 += KVCU_TILE) {
            if (((const int *)seg->positions)[k0] > lastPos) break;  // positions ascend in a segment
            kvcu_load_tile(seg, k0, d, 1, kv, kpos, klog);
            __syncthreads();
            float s[KVCU_TILE / 4];
            float tileMax = -KVCU_INFINITY;
            for (int i = 0; i < KVCU_TILE / 4; i++) {
                const int k = qq + 4 * i;
                float dot = 0.0f;
                for (int c = 0; c < d; c++) dot += qs[r * d + c] * kv[k * d + c];
                s[i] = kpos[k] <= myPos ? dot * scale + klog[k] : -KVCU_INFINITY;
                tileMax = fmaxf(tileMax, s[i]);
            }
            red[r * 4 + qq] = tileMax;
            __syncthreads();
            float newMax = runMax;
            for (int i = 0; i < 4; i++) newMax = fmaxf(newMax, red[r * 4 + i]);
            float tileSum = 0.0f;
            for (int i = 0; i < KVCU_TILE / 4; i++) {
                const float e = newMax == -KVCU_INFINITY ? 0.0f : expf(s[i] - newMax);
                sp[r * KVCU_TILE + qq + 4 * i] = e;
                tileSum += e;
            }
            __syncthreads();  // everyone has read red and the keys
            red[r * 4 + qq] = tileSum;
            kvcu_load_tile(seg, k0, d, 0, kv, 0, 0);
            __syncthreads();
            float sum = 0.0f;
            for (int i = 0; i < 4; i++) sum += red[r * 4 + i];
            const float alpha = runMax == -KVCU_INFINITY ? 0.0f : expf(runMax - newMax);
            runSum = runSum * alpha + sum;
            runMax = newMax;
            for (int c = 0; c < cw; c++) {
                float x = acc[c] * alpha;
                for (int k = 0; k < KVCU_TILE; k++) x += sp[r * KVCU_TILE + k] * kv[k * d + qq * cw + c];
                acc[c] = x;
            }
            __syncthreads();  // before the next tile overwrites kv, sp and red
        }
    }
    if (t0 + r < query_count) {
        float *out = output + ((long long)(t0 + r) * heads + h) * d + qq * cw;
        for (int c = 0; c < cw; c++) out[c] = runSum > 0.0f ? acc[c] / runSum : 0.0f;
        if (lse && qq == 0) lse[(long long)(t0 + r) * heads + h] = runSum > 0.0f ? runMax + logf(runSum) : -KVCU_INFINITY;
    }
}

/// Prefill column sums: for KV head m and head row j, the sum over the query tokens and the query
/// heads of group m of their causal softmax probability of row j (needs the `lse` of
/// `kvcu_prefill`). One block per (tile of KVCU_TILE rows, segment); `sums[m * stride + row]`.
extern "C" __global__ void kvcu_prefill_column_sums(const kvcu_segment *segments, const float *queries,
                                                    int query_count, int query_stride, const int *query_positions,
                                                    int heads, int g, int d, float scale, const float *lse,
                                                    float *sums, int stride) {
    __shared__ float kv[KVCU_TILE * KVCU_PMAXD];
    __shared__ int kpos[KVCU_TILE];
    __shared__ float klog[KVCU_TILE];
    __shared__ float part[4 * KVCU_TILE];
    const kvcu_segment *seg = segments + blockIdx.y;
    const int k0 = blockIdx.x * KVCU_TILE;
    if (k0 >= seg->count) return;  // the whole block leaves together
    kvcu_load_tile(seg, k0, d, 1, kv, kpos, klog);
    __syncthreads();
    const int tid = threadIdx.x, k = tid % KVCU_TILE, lane = tid / KVCU_TILE;  // 4 query lanes per row
    float s = 0.0f;
    if (k0 + k < seg->count) {
        for (int hh = 0; hh < g; hh++) {
            const int h = seg->head * g + hh;
            for (int t = lane; t < query_count; t += 4) {
                if (query_positions[t] < kpos[k]) continue;
                const float l = lse[(long long)t * heads + h];
                if (l == -KVCU_INFINITY) continue;
                const float *qv = queries + (long long)t * query_stride + h * d;
                float dot = 0.0f;
                for (int c = 0; c < d; c++) dot += qv[c] * kv[k * d + c];
                s += expf(dot * scale + klog[k] - l);
            }
        }
    }
    part[lane * KVCU_TILE + k] = s;
    __syncthreads();
    if (tid < KVCU_TILE && k0 + tid < seg->count) {
        sums[(long long)seg->head * stride + seg->first_row + k0 + tid] =
            part[tid] + part[KVCU_TILE + tid] + part[2 * KVCU_TILE + tid] + part[3 * KVCU_TILE + tid];
    }
}

// ------------------------------------------------------------------------------ observation

/// Observation logits: for query head h, chosen query t and head row j, the scaled logit (plus
/// log count), or -inf where position(j) > query_positions[t]; at
/// `out[(h * query_count + t) * out_stride + first_row + j]`. One block per (tile of rows, segment).
extern "C" __global__ void kvcu_observe_logits(const kvcu_segment *segments, const float *queries, int query_count,
                                               int query_stride, const int *query_positions, int g, int d,
                                               float scale, float *out, int out_stride) {
    const kvcu_segment *seg = segments + blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= seg->count) return;
    const unsigned char *k = (const unsigned char *)seg->keys + (long long)j * seg->key_stride;
    const int pos = ((const int *)seg->positions)[j];
    const float lc = kvcu_log_count(seg, j);
    for (int hh = 0; hh < g; hh++) {
        const int h = seg->head * g + hh;
        for (int t = 0; t < query_count; t++) {
            float v = -KVCU_INFINITY;
            if (pos <= query_positions[t]) {
                const float *qv = queries + (long long)t * query_stride + h * d;
                float dot = 0.0f;
                for (int c0 = 0; c0 < d; c0 += 8) {
                    float x[8];
                    kvcu_load8(seg->key_type, k, c0, x);
                    for (int i = 0; i < 8; i++) dot += qv[c0 + i] * x[i];
                }
                v = dot * scale + lc;
            }
            out[((long long)h * query_count + t) * out_stride + seg->first_row + j] = v;
        }
    }
}

/// In-place softmax of rows of logits: row i (of `rows`) holds `lengths[i / per_length]` entries
/// at `x + i * stride`; -inf entries become 0, a row with none visible becomes all 0.
extern "C" __global__ void kvcu_softmax_rows(float *x, int stride, const int *lengths, int per_length) {
    __shared__ float red[KVCU_THREADS];
    float *row = x + (long long)blockIdx.x * stride;
    const int n = lengths[blockIdx.x / per_length];
    const int tid = threadIdx.x;
    float m = -KVCU_INFINITY;
    for (int j = tid; j < n; j += KVCU_THREADS) m = fmaxf(m, row[j]);
    red[tid] = m;
    __syncthreads();
    for (int w = KVCU_THREADS / 2; w > 0; w /= 2) {
        if (tid < w) red[tid] = fmaxf(red[tid], red[tid + w]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    float s = 0.0f;
    for (int j = tid; j < n; j += KVCU_THREADS) {
        const float e = m == -KVCU_INFINITY ? 0.0f : expf(row[j] - m);
        row[j] = e;
        s += e;
    }
    red[tid] = s;
    __syncthreads();
    for (int w = KVCU_THREADS / 2; w > 0; w /= 2) {
        if (tid < w) red[tid] += red[tid + w];
        __syncthreads();
    }
    const float inv = red[0] > 0.0f ? 1.0f / red[0] : 0.0f;
    for (int j = tid; j < n; j += KVCU_THREADS) row[j] *= inv;
}

// ------------------------------------------------------------------------------ compaction

/// Eviction's compaction: `dst` row i = `src` row `rows[i]` (`row_bytes` bytes each). One block per
/// 64 rows; words of 4 bytes when every address and size allows, bytes otherwise.
extern "C" __global__ void kvcu_gather_rows(const unsigned char *src, long long src_stride, unsigned char *dst,
                                            long long dst_stride, const int *rows, int count, int row_bytes) {
    const int first = blockIdx.x * 64;
    const int words = ((((unsigned long long)src | (unsigned long long)dst | (unsigned long long)src_stride |
                         (unsigned long long)dst_stride | (unsigned long long)row_bytes) & 3) == 0);
    for (int i = first; i < first + 64 && i < count; i++) {
        const unsigned char *s = src + rows[i] * src_stride;
        unsigned char *t = dst + i * dst_stride;
        if (words) {
            for (int b = threadIdx.x; b < row_bytes / 4; b += blockDim.x) ((unsigned int *)t)[b] = ((const unsigned int *)s)[b];
        } else {
            for (int b = threadIdx.x; b < row_bytes; b += blockDim.x) t[b] = s[b];
        }
    }
}
