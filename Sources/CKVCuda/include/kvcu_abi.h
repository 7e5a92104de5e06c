/* Data shared by the CUDA kernels (kernels/kvcuda.cu) and the host side (CKVCuda.h): plain C,
 * no headers, the same layout in C, C++ and CUDA. */
#ifndef KVCU_ABI_H
#define KVCU_ABI_H

/* Element types: the GGUF / CKVKernels type ids. */
#define KVCU_F32 0
#define KVCU_F16 1
#define KVCU_Q4_0 2
#define KVCU_Q4_1 3
#define KVCU_Q8_0 8
#define KVCU_BF16 30
#define KVCU_Q2_1 1002

#define KVCU_THREADS 128 /* threads per block of every kernel */
#define KVCU_CHUNK 256   /* decode: rows per work item */
#define KVCU_MAXG 8      /* decode and prefill: query heads per KV head, at most */
#define KVCU_MAXD 256    /* decode: head dimension, at most (a multiple of 8) */
#define KVCU_TILE 32     /* prefill: query and key tile */
#define KVCU_PMAXD 128   /* prefill, column sums: head dimension, at most (a multiple of 8) */

/** One run of a KV head's rows in device memory (a head whose entries live in several parts has
 *  one segment per part; its rows are the segments' concatenation). Addresses are device
 *  pointers; `log_counts` may be 0 (every row one token). Rows of f32 / f16 / bf16 keys and values
 *  are 16-byte aligned. 64 bytes. */
typedef struct kvcu_segment {
    unsigned long long keys;
    unsigned long long values;
    unsigned long long positions;  /* int32, ascending */
    unsigned long long log_counts; /* float per row, or 0 */
    int count;
    int key_type;
    int value_type;
    int key_stride;   /* bytes */
    int value_stride; /* bytes */
    int head;         /* KV head */
    int first_row;    /* the segment's first row among its head's rows */
    int reserved;
} kvcu_segment;

/** A decode work item: rows start ..< end (at most KVCU_CHUNK) of one segment. Items of one KV
 *  head are consecutive. */
typedef struct kvcu_item {
    int segment;
    int start;
    int end;
    int reserved;
} kvcu_item;

#endif
