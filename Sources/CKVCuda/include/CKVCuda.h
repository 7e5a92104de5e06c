/* CKVCuda: the optional CUDA backend of KVCompress, through the CUDA driver API loaded at run time.
 *
 * Compiles everywhere with no CUDA headers and no toolkit: at first use it dlopen()s the driver
 * library (libcuda.so.1, or $KVCOMPRESS_CUDA_DRIVER), resolves the entry points it needs, takes the
 * primary context of device 0 (or $KVCOMPRESS_CUDA_DEVICE) and loads the kernels from PTX embedded in
 * the library (or from the file $KVCOMPRESS_CUDA_PTX). Every function returns a status (KVCU_OK = 0,
 * or a negative KVCU_ERROR_*); kvcu_last_error() explains the last failure on the calling thread.
 * "No driver" and "no GPU" are normal states reported by kvcu_initialize(), never crashes.
 *
 * Device memory is addressed by 64-bit device addresses (uint64_t). All work runs in order on the
 * context's default stream; kvcu_download() and kvcu_synchronize() wait for it.
 */
#ifndef CKVCUDA_H
#define CKVCUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kvcu_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Status codes. */
enum {
    KVCU_OK = 0,
    KVCU_ERROR_NO_DRIVER = -1,  /* the driver library is absent or lacks an entry point */
    KVCU_ERROR_NO_DEVICE = -2,  /* the driver found no usable GPU */
    KVCU_ERROR_DRIVER = -3,     /* a driver call failed (the message names it and the CUDA error) */
    KVCU_ERROR_MODULE = -4,     /* the PTX did not load (the message has the JIT log) */
    KVCU_ERROR_ARGUMENT = -5    /* a shape or size the kernels do not support */
};

/** What the device is. */
typedef struct kvcu_device_info {
    char name[256];
    uint64_t total_memory;   /* bytes */
    int compute_major;
    int compute_minor;
    int multiprocessors;
    int driver_version;      /* e.g. 12040 for CUDA 12.4 */
} kvcu_device_info;

/** Loads the driver, the device and the kernels once (thread-safe); later calls return the first
 *  call's status. */
int32_t kvcu_initialize(void);
/** Tries to load the driver library at `path` and find a GPU through it, changing no state:
 *  KVCU_OK, or the status and message kvcu_initialize() would give with that library. */
int32_t kvcu_probe(const char *path);
/** The message of the last failure on this thread ("" when none). */
const char *kvcu_last_error(void);
/** The device's description (after a successful kvcu_initialize()). */
int32_t kvcu_device(kvcu_device_info *info);
/** Free and total device memory, in bytes. */
int32_t kvcu_memory(uint64_t *free_bytes, uint64_t *total_bytes);

/** Allocates `bytes` (> 0) of device memory. */
int32_t kvcu_malloc(size_t bytes, uint64_t *address);
/** Frees device memory from kvcu_malloc (0 is ignored). */
int32_t kvcu_free(uint64_t address);
/** Host to device (synchronous). */
int32_t kvcu_upload(uint64_t dst, const void *src, size_t bytes);
/** Device to host (waits for earlier work). */
int32_t kvcu_download(void *dst, uint64_t src, size_t bytes);
/** Device to device (in stream order). */
int32_t kvcu_copy(uint64_t dst, uint64_t src, size_t bytes);
/** Waits for all queued work. */
int32_t kvcu_synchronize(void);

/** Decode attention of one query token (`query`: [heads][d] f32, heads = kv_heads * g) over the
 *  segments' rows: kvcu_decode_partial over `item_count` items (`items`, consecutive per KV head,
 *  `item_first`: kv_heads + 1 ints), then kvcu_decode_merge into `output` ([heads][d] f32) and
 *  `lse` (heads floats, may be 0 unless `sums` is given). `partials`: item_count * g * (d + 2)
 *  floats of scratch. With `sums` (KV head m's row j at sums[m * sums_stride + j]), `scores`
 *  (item_count * g * KVCU_CHUNK floats of scratch) and `lse` are needed too. */
int32_t kvcu_decode_attention(uint64_t segments, uint64_t items, int item_count, uint64_t item_first, int kv_heads,
                              uint64_t query, int g, int d, float scale, uint64_t partials, uint64_t scores,
                              uint64_t output, uint64_t lse, uint64_t sums, int sums_stride);

/** Causal prefill attention (kvcu_prefill): `queries` token t, head h at queries[t * query_stride
 *  + h * d]; `output` [query_count][heads][d]; `lse` [query_count][heads] (may be 0 unless `sums`);
 *  `segment_first`: kv_heads + 1 ints; with `sums`, also the column sums (kvcu_prefill_column_sums,
 *  `max_segment_rows` the most rows of a segment). */
int32_t kvcu_prefill_attention(uint64_t segments, int segment_count, uint64_t segment_first, int kv_heads,
                               int max_segment_rows, uint64_t queries, int query_count, int query_stride,
                               uint64_t query_positions, int g, int d, float scale, uint64_t output, uint64_t lse,
                               uint64_t sums, int sums_stride);

/** Softmax probabilities of chosen queries over every head's rows, causal by position
 *  (kvcu_observe_logits then kvcu_softmax_rows): query head h, query t, head row j at
 *  out[(h * query_count + t) * out_stride + j]; `head_rows`: kv_heads ints (rows per KV head). */
int32_t kvcu_observe(uint64_t segments, int segment_count, int max_segment_rows, uint64_t head_rows, int kv_heads,
                     uint64_t queries, int query_count, int query_stride, uint64_t query_positions, int g, int d,
                     float scale, uint64_t out, int out_stride);

/** Compaction: dst row i = src row rows[i] (`row_bytes` each; rows: count int32s on the device). */
int32_t kvcu_gather_rows(uint64_t src, int64_t src_stride, uint64_t dst, int64_t dst_stride, uint64_t rows,
                         int count, int row_bytes);

/** The embedded PTX (NUL-terminated), generated by Scripts/build_ptx.py from kernels/kvcuda.cu. */
const char *kvcu_ptx(void);

#ifdef __cplusplus
}
#endif

#endif
