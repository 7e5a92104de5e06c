// CPU emulation of the small part of CUDA that Sources/CKVCuda/kernels/kvcuda.cu uses, so that the
// kernel file compiles as C++20 (g++ -DKVCU_EMULATE) and runs thread by thread on the host.
//
//   - __global__ / __device__ are empty; __shared__ is `static`: blocks run one after another, so
//     the threads of the running block share a kernel's statics as CUDA threads share a block's
//     shared memory. The statics live in one linker section, which emu_launch fills with 0xff
//     bytes (NaN as float, -1 as int) before every block, so a kernel that reads shared memory it
//     did not write in the same block sees garbage, as on a GPU, not the previous block's values.
//   - threadIdx / blockIdx / blockDim / gridDim are thread_local, set by emu_launch for every
//     emulated thread.
//   - __syncthreads() is arrive_and_wait on a block-wide std::barrier. A thread whose kernel
//     function returns drops out of the barrier (arrive_and_drop), so threads that leave early do
//     not deadlock the others, as exited threads do not hold up a CUDA barrier.
//   - Every __syncthreads() records its source line; when a barrier phase completes, all threads
//     still running must have arrived from the same line, otherwise the emulation aborts (CUDA
//     requires a __syncthreads to be reached by all threads of the block: one reached in divergent
//     code is undefined behaviour that a counting barrier would silently accept).
//   - Device pointers are host pointers (kvcu_segment's unsigned long long addresses are host
//     addresses cast to integers).
//
// Not emulated: warps (and warp-synchronous code), memory ordering beyond what the barrier gives,
// blocks running concurrently (they run one after another, so races between blocks go unseen).
// Data races inside a block are real races between std::threads here: build with
// -fsanitize=thread to have them reported (Scripts/cuda_emulation.sh: KVCU_EMU_SANITIZE=thread).
#ifndef KVCUDA_EMULATE_HPP
#define KVCUDA_EMULATE_HPP

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <math.h>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __shared__ __attribute__((section("kvcu_emu_shared"))) static

// The bounds of the section of __shared__ statics (GNU ld defines __start_ / __stop_ symbols for a
// section whose name is an identifier).
extern "C" unsigned char __start_kvcu_emu_shared[] __attribute__((weak));
extern "C" unsigned char __stop_kvcu_emu_shared[] __attribute__((weak));

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// CUDA's vector types (16-byte aligned; may_alias because kernels load them from byte buffers).
struct __attribute__((aligned(16), may_alias)) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(16), may_alias)) float4 { float x, y, z, w; };

inline thread_local dim3 threadIdx{0, 0, 0};
inline thread_local dim3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

static inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}

#define KVCU_INFINITY __int_as_float(0x7f800000)

namespace emu {

/// Per-block state of the running launch (one block runs at a time).
struct BlockState {
    int threads = 0;
    std::vector<int> line;            // the __syncthreads line each thread waits at
    std::vector<unsigned char> gone;  // the thread's kernel function has returned
};

inline BlockState block;

struct PhaseCheck {
    void operator()() noexcept {
        int want = -1;
        for (int t = 0; t < block.threads; t++) {
            if (block.gone[t]) continue;
            if (want < 0) want = block.line[t];
            if (block.line[t] != want) {
                std::fprintf(stderr,
                             "emulation: divergent __syncthreads in block (%u,%u,%u): thread %d at line %d, "
                             "another at line %d\n",
                             blockIdx.x, blockIdx.y, blockIdx.z, t, block.line[t], want);
                std::abort();
            }
        }
    }
};

inline std::barrier<PhaseCheck> *barrier = nullptr;
inline thread_local int linearThread = 0;

inline void syncthreads(int line) {
    block.line[linearThread] = line;
    barrier->arrive_and_wait();
}

}  // namespace emu

#define __syncthreads() emu::syncthreads(__LINE__)

/// Runs `kernelCall` (a callable that calls one kernel function with its arguments) for every
/// thread of every block of `grid`: blocks one after another, each block's blockDim.x * y * z
/// threads as concurrent std::threads that share the block's barrier.
template <class F>
void emu_launch(dim3 grid, dim3 blockShape, F kernelCall) {
    const int threads = (int)(blockShape.x * blockShape.y * blockShape.z);
    for (unsigned int bz = 0; bz < grid.z; bz++)
        for (unsigned int by = 0; by < grid.y; by++)
            for (unsigned int bx = 0; bx < grid.x; bx++) {
#if !defined(__SANITIZE_ADDRESS__)  // (AddressSanitizer's redzones sit between the statics)
                if (__start_kvcu_emu_shared && __stop_kvcu_emu_shared)
                    std::memset(__start_kvcu_emu_shared, 0xff, (size_t)(__stop_kvcu_emu_shared - __start_kvcu_emu_shared));
#endif
                emu::block.threads = threads;
                emu::block.line.assign(threads, 0);
                emu::block.gone.assign(threads, 0);
                std::barrier<emu::PhaseCheck> bar(threads, emu::PhaseCheck{});
                emu::barrier = &bar;
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (int t = 0; t < threads; t++) {
                    pool.emplace_back([&, t, bx, by, bz] {
                        gridDim = grid;
                        blockDim = blockShape;
                        blockIdx = dim3(bx, by, bz);
                        threadIdx = dim3(t % blockShape.x, (t / blockShape.x) % blockShape.y,
                                         t / (blockShape.x * blockShape.y));
                        emu::linearThread = t;
                        kernelCall();
                        emu::block.gone[t] = 1;
                        bar.arrive_and_drop();
                    });
                }
                for (auto &th : pool) th.join();
                emu::barrier = nullptr;
            }
}

#endif
