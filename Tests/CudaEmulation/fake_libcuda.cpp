// A fake CUDA driver library: the driver API entry points that Sources/CKVCuda/kvcu.c resolves,
// running the kernels of Sources/CKVCuda/kernels/kvcuda.cu on the CPU through the emulation of
// kvcuda_emulate.hpp. With it the whole CUDA backend (the shim and the Swift code above it) runs
// end to end on a machine with no GPU:
//
//   bash Scripts/cuda_emulation.sh --driver /tmp/libkvcu_fakecuda.so
//   KVCOMPRESS_CUDA_DRIVER=/tmp/libkvcu_fakecuda.so swift test ...
//
// One device ("KVCompress CPU emulation of CUDA", compute capability 8.0, 1 multiprocessor, 16 GiB)
// with one primary context. Device memory is host memory: cuMemAlloc_v2 returns a 256-byte aligned
// host address, filled with 0xff bytes (device memory is not zeroed on a GPU either: a NaN for f32,
// so output a kernel should have written and did not shows up). Copies are checked against the
// allocations (a range outside every allocation gives CUDA_ERROR_INVALID_VALUE). The context is
// current per thread, as in CUDA: a thread must call cuCtxSetCurrent before using it.
//
// The module accepts any non-empty PTX text; cuModuleGetFunction knows the kernels of kvcuda.cu by
// name and, when the text declares entries (".entry"), also wants the name declared there, so a
// stale PTX that lacks a kernel fails as it would on a GPU. cuLaunchKernel reads `kernelParams` in
// the kernel's parameter order (each a pointer to the argument's value) and runs the grid
// synchronously, block after block, with KVCU_THREADS CPU threads per block (the block shape must be
// KVCU_THREADS x 1 x 1). Launches, copies and allocations are serialized by one mutex, so calls from
// several threads run one at a time (the stream is synchronous; cuCtxSynchronize has nothing to
// wait for). A divergent __syncthreads aborts the process with a message (see kvcuda_emulate.hpp).

#include "../../Sources/CKVCuda/kernels/kvcuda.cu"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

namespace {

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_PTX = 218,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

const int kDriverVersion = 12010;
const char kDeviceName[] = "KVCompress CPU emulation of CUDA";
const size_t kTotalMemory = (size_t)16 << 30;

// ------------------------------------------------------------------------------ state

std::mutex mutex;  // launches, copies, allocations, modules
std::atomic<bool> initialized{false};
struct Context { int device = 0; } primaryContext;
thread_local Context *current = nullptr;

struct Allocation { size_t bytes; };
std::map<uintptr_t, Allocation> allocations;  // by base address
size_t allocated = 0;

struct Module { std::string ptx; };

// Reads argument i of a launch as a value of type T (kvcu.c passes device pointers as 64-bit
// integers; a pointer parameter reads the same 8 bytes).
template <class T> T arg(void **params, int i) {
    T value;
    std::memcpy(&value, params[i], sizeof value);
    return value;
}

typedef void (*Launcher)(dim3 grid, void **params);

struct Kernel {
    const char *name;
    Launcher launch;
};

const dim3 kBlock(KVCU_THREADS);

// One launcher per kernel of kvcuda.cu: its parameters, in order.
const Kernel kernels[] = {
    {"kvcu_decode_partial",
     [](dim3 grid, void **p) {
         auto segments = arg<const kvcu_segment *>(p, 0);
         auto items = arg<const kvcu_item *>(p, 1);
         auto query = arg<const float *>(p, 2);
         auto g = arg<int>(p, 3), d = arg<int>(p, 4);
         auto scale = arg<float>(p, 5);
         auto partials = arg<float *>(p, 6), scores = arg<float *>(p, 7);
         emu_launch(grid, kBlock, [&] { kvcu_decode_partial(segments, items, query, g, d, scale, partials, scores); });
     }},
    {"kvcu_decode_merge",
     [](dim3 grid, void **p) {
         auto itemFirst = arg<const int *>(p, 0);
         auto g = arg<int>(p, 1), d = arg<int>(p, 2);
         auto partials = arg<const float *>(p, 3);
         auto output = arg<float *>(p, 4), lse = arg<float *>(p, 5);
         emu_launch(grid, kBlock, [&] { kvcu_decode_merge(itemFirst, g, d, partials, output, lse); });
     }},
    {"kvcu_decode_column_sums",
     [](dim3 grid, void **p) {
         auto segments = arg<const kvcu_segment *>(p, 0);
         auto items = arg<const kvcu_item *>(p, 1);
         auto g = arg<int>(p, 2);
         auto scores = arg<const float *>(p, 3), lse = arg<const float *>(p, 4);
         auto sums = arg<float *>(p, 5);
         auto stride = arg<int>(p, 6);
         emu_launch(grid, kBlock, [&] { kvcu_decode_column_sums(segments, items, g, scores, lse, sums, stride); });
     }},
    {"kvcu_prefill",
     [](dim3 grid, void **p) {
         auto segments = arg<const kvcu_segment *>(p, 0);
         auto segmentFirst = arg<const int *>(p, 1);
         auto queries = arg<const float *>(p, 2);
         auto queryCount = arg<int>(p, 3), queryStride = arg<int>(p, 4);
         auto queryPositions = arg<const int *>(p, 5);
         auto heads = arg<int>(p, 6), g = arg<int>(p, 7), d = arg<int>(p, 8);
         auto scale = arg<float>(p, 9);
         auto output = arg<float *>(p, 10), lse = arg<float *>(p, 11);
         emu_launch(grid, kBlock, [&] {
             kvcu_prefill(segments, segmentFirst, queries, queryCount, queryStride, queryPositions, heads, g, d, scale,
                          output, lse);
         });
     }},
    {"kvcu_prefill_column_sums",
     [](dim3 grid, void **p) {
         auto segments = arg<const kvcu_segment *>(p, 0);
         auto queries = arg<const float *>(p, 1);
         auto queryCount = arg<int>(p, 2), queryStride = arg<int>(p, 3);
         auto queryPositions = arg<const int *>(p, 4);
         auto heads = arg<int>(p, 5), g = arg<int>(p, 6), d = arg<int>(p, 7);
         auto scale = arg<float>(p, 8);
         auto lse = arg<const float *>(p, 9);
         auto sums = arg<float *>(p, 10);
         auto stride = arg<int>(p, 11);
         emu_launch(grid, kBlock, [&] {
             kvcu_prefill_column_sums(segments, queries, queryCount, queryStride, queryPositions, heads, g, d, scale,
                                      lse, sums, stride);
         });
     }},
    {"kvcu_observe_logits",
     [](dim3 grid, void **p) {
         auto segments = arg<const kvcu_segment *>(p, 0);
         auto queries = arg<const float *>(p, 1);
         auto queryCount = arg<int>(p, 2), queryStride = arg<int>(p, 3);
         auto queryPositions = arg<const int *>(p, 4);
         auto g = arg<int>(p, 5), d = arg<int>(p, 6);
         auto scale = arg<float>(p, 7);
         auto out = arg<float *>(p, 8);
         auto outStride = arg<int>(p, 9);
         emu_launch(grid, kBlock, [&] {
             kvcu_observe_logits(segments, queries, queryCount, queryStride, queryPositions, g, d, scale, out,
                                 outStride);
         });
     }},
    {"kvcu_softmax_rows",
     [](dim3 grid, void **p) {
         auto x = arg<float *>(p, 0);
         auto stride = arg<int>(p, 1);
         auto lengths = arg<const int *>(p, 2);
         auto perLength = arg<int>(p, 3);
         emu_launch(grid, kBlock, [&] { kvcu_softmax_rows(x, stride, lengths, perLength); });
     }},
    {"kvcu_gather_rows",
     [](dim3 grid, void **p) {
         auto src = arg<const unsigned char *>(p, 0);
         auto srcStride = arg<long long>(p, 1);
         auto dst = arg<unsigned char *>(p, 2);
         auto dstStride = arg<long long>(p, 3);
         auto rows = arg<const int *>(p, 4);
         auto count = arg<int>(p, 5), rowBytes = arg<int>(p, 6);
         emu_launch(grid, kBlock, [&] { kvcu_gather_rows(src, srcStride, dst, dstStride, rows, count, rowBytes); });
     }},
};

bool known_kernel(const void *f) {
    for (const Kernel &k : kernels)
        if (f == &k) return true;
    return false;
}

// Whether [address, address + bytes) lies inside one allocation (mutex held).
bool inside_allocation(CUdeviceptr address, size_t bytes) {
    auto it = allocations.upper_bound((uintptr_t)address);
    if (it == allocations.begin()) return false;
    --it;
    const uintptr_t base = it->first;
    return address >= base && address - base <= it->second.bytes && bytes <= it->second.bytes - (address - base);
}

CUresult ready() {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (!current) return CUDA_ERROR_INVALID_CONTEXT;
    return CUDA_SUCCESS;
}

struct ErrorText {
    int code;
    const char *name, *text;
};

const ErrorText errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
};

const ErrorText *find_error(CUresult r) {
    for (const ErrorText &e : errors)
        if (e.code == r) return &e;
    return nullptr;
}

}  // namespace

#define KVCU_FAKE_EXPORT extern "C" __attribute__((visibility("default")))

KVCU_FAKE_EXPORT CUresult cuInit(unsigned int flags) {
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lock(mutex);
    initialized = true;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuDriverGetVersion(int *version) {
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    *version = kDriverVersion;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuDeviceGetCount(int *count) {
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    *count = 1;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuDeviceGetName(char *name, int length, CUdevice device) {
    if (!name || length <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::snprintf(name, (size_t)length, "%s", kDeviceName);
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice device) {
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = kTotalMemory;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice device) {
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    switch (attribute) {
    case 1: *value = KVCU_THREADS; return CUDA_SUCCESS;  // MAX_THREADS_PER_BLOCK (what the emulation runs)
    case 8: *value = 48 * 1024; return CUDA_SUCCESS;     // MAX_SHARED_MEMORY_PER_BLOCK
    case 10: *value = 32; return CUDA_SUCCESS;           // WARP_SIZE
    case 16: *value = 1; return CUDA_SUCCESS;            // MULTIPROCESSOR_COUNT
    case 75: *value = 8; return CUDA_SUCCESS;            // COMPUTE_CAPABILITY_MAJOR
    case 76: *value = 0; return CUDA_SUCCESS;            // COMPUTE_CAPABILITY_MINOR
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

KVCU_FAKE_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *context, CUdevice device) {
    if (!context) return CUDA_ERROR_INVALID_VALUE;
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *context = &primaryContext;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuCtxSetCurrent(CUcontext context) {
    if (!initialized) return CUDA_ERROR_NOT_INITIALIZED;
    if (context && context != &primaryContext) return CUDA_ERROR_INVALID_CONTEXT;
    current = (Context *)context;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuCtxSynchronize(void) {
    if (CUresult r = ready()) return r;
    std::lock_guard<std::mutex> lock(mutex);  // waits for a launch running on another thread
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int optionCount,
                                             int *options, void **optionValues) {
    if (!module || !image || (optionCount && (!options || !optionValues))) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = ready()) return r;
    char *log = nullptr;
    size_t logSize = 0;
    for (unsigned int i = 0; i < optionCount; i++) {
        if (options[i] == 5) log = (char *)optionValues[i];                       // CU_JIT_ERROR_LOG_BUFFER
        if (options[i] == 6) logSize = (size_t)(uintptr_t)optionValues[i];        // ..._SIZE_BYTES
    }
    if (log && logSize) log[0] = 0;
    const char *text = (const char *)image;
    if (!*text) {
        if (log && logSize) std::snprintf(log, logSize, "fake CUDA driver: the PTX text is empty");
        return CUDA_ERROR_INVALID_PTX;
    }
    *module = new Module{std::string(text)};
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuModuleGetFunction(CUfunction *function, CUmodule module, const char *name) {
    if (!function || !name) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = ready()) return r;
    if (!module) return CUDA_ERROR_INVALID_HANDLE;
    const std::string &ptx = ((Module *)module)->ptx;
    if (ptx.find(".entry") != std::string::npos && ptx.find(".entry " + std::string(name) + "(") == std::string::npos)
        return CUDA_ERROR_NOT_FOUND;
    for (const Kernel &k : kernels) {
        if (std::strcmp(k.name, name) == 0) {
            *function = (void *)&k;
            return CUDA_SUCCESS;
        }
    }
    return CUDA_ERROR_NOT_FOUND;
}

KVCU_FAKE_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *address, size_t bytes) {
    if (!address || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = ready()) return r;
    std::lock_guard<std::mutex> lock(mutex);
    if (bytes > kTotalMemory - allocated) return CUDA_ERROR_OUT_OF_MEMORY;
    const size_t rounded = (bytes + 255) / 256 * 256;
    void *p = std::aligned_alloc(256, rounded);
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    std::memset(p, 0xff, rounded);
    allocations[(uintptr_t)p] = Allocation{bytes};
    allocated += bytes;
    *address = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuMemFree_v2(CUdeviceptr address) {
    if (CUresult r = ready()) return r;
    if (address == 0) return CUDA_SUCCESS;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = allocations.find((uintptr_t)address);
    if (it == allocations.end()) return CUDA_ERROR_INVALID_VALUE;
    allocated -= it->second.bytes;
    allocations.erase(it);
    std::free((void *)(uintptr_t)address);
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuMemGetInfo_v2(size_t *freeBytes, size_t *totalBytes) {
    if (!freeBytes || !totalBytes) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = ready()) return r;
    std::lock_guard<std::mutex> lock(mutex);
    *freeBytes = kTotalMemory - allocated;
    *totalBytes = kTotalMemory;
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes) {
    if (CUresult r = ready()) return r;
    std::lock_guard<std::mutex> lock(mutex);
    if (!src || !inside_allocation(dst, bytes)) return CUDA_ERROR_INVALID_VALUE;
    if (bytes) std::memcpy((void *)(uintptr_t)dst, src, bytes);
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes) {
    if (CUresult r = ready()) return r;
    std::lock_guard<std::mutex> lock(mutex);
    if (!dst || !inside_allocation(src, bytes)) return CUDA_ERROR_INVALID_VALUE;
    if (bytes) std::memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) {
    if (CUresult r = ready()) return r;
    if (stream) return CUDA_ERROR_INVALID_HANDLE;  // only the default stream exists
    std::lock_guard<std::mutex> lock(mutex);
    if (!inside_allocation(dst, bytes) || !inside_allocation(src, bytes)) return CUDA_ERROR_INVALID_VALUE;
    if (bytes) std::memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuLaunchKernel(CUfunction function, unsigned int gridX, unsigned int gridY,
                                         unsigned int gridZ, unsigned int blockX, unsigned int blockY,
                                         unsigned int blockZ, unsigned int sharedMemBytes, CUstream stream,
                                         void **kernelParams, void **extra) {
    if (CUresult r = ready()) return r;
    if (!function || !known_kernel(function)) return CUDA_ERROR_INVALID_HANDLE;
    if (stream) return CUDA_ERROR_INVALID_HANDLE;  // only the default stream exists
    if (extra) return CUDA_ERROR_NOT_SUPPORTED;     // parameters come through kernelParams only
    if (!kernelParams) return CUDA_ERROR_INVALID_VALUE;
    if (gridX == 0 || gridY == 0 || gridZ == 0 || gridX > 0x7fffffffu || gridY > 65535 || gridZ > 65535)
        return CUDA_ERROR_INVALID_VALUE;
    if (blockX != KVCU_THREADS || blockY != 1 || blockZ != 1) return CUDA_ERROR_INVALID_VALUE;
    if (sharedMemBytes != 0) return CUDA_ERROR_INVALID_VALUE;  // the kernels use static shared memory only
    std::lock_guard<std::mutex> lock(mutex);
    ((const Kernel *)function)->launch(dim3(gridX, gridY, gridZ), kernelParams);
    return CUDA_SUCCESS;
}

KVCU_FAKE_EXPORT CUresult cuGetErrorName(CUresult error, const char **name) {
    if (!name) return CUDA_ERROR_INVALID_VALUE;
    const ErrorText *e = find_error(error);
    *name = e ? e->name : nullptr;
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

KVCU_FAKE_EXPORT CUresult cuGetErrorString(CUresult error, const char **text) {
    if (!text) return CUDA_ERROR_INVALID_VALUE;
    const ErrorText *e = find_error(error);
    *text = e ? e->text : nullptr;
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
