// CPU emulation of the small part of CUDA that Sources/CKVCuda/kernels/kvcuda.cu uses, so that the
// kernel file compiles as C++20 (g++ -DKVCU_EMULATE) and runs thread by thread on the host.
//
//   - __global__ / __device__ are empty; __shared__ is `static`: blocks run one after another, so
//     the threads of the running block share a kernel's statics as CUDA threads share a block's
//     shared memory. The statics live in one linker section, which emu_launch fills with 0xff
//     bytes (NaN as float, -1 as int) before every block, so a kernel that reads shared memory it
//     did not write in the same block sees garbage, as on a GPU, not the previous block's values.
//   - A block's threads are the KVCU_THREADS (blockDim.x * y * z) workers of a persistent pool
//     (emu::Pool), created once and reused for every block of every launch.
//   - threadIdx / blockIdx / blockDim / gridDim are thread_local, set by each worker at the start
//     of every block.
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
#include <memory>
#include <ucontext.h>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __shared__ __attribute__((section("kvcu_emu_shared"))) static

// The bounds of the section of __shared__ statics (GNU ld defines __start_ / __stop_ symbols for a
// section whose name is an identifier).
extern "C" unsigned char __start_kvcu_emu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" unsigned char __stop_kvcu_emu_shared[] __attribute__((weak, visibility("hidden")));

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

#ifndef KVCU_EMU_FIBERS_DEFAULT  // the mode when KVCU_EMU_FIBERS is unset (the fake driver builds with 1)
#define KVCU_EMU_FIBERS_DEFAULT 0
#endif

/// The fiber mode (KVCU_EMU_FIBERS=1 in the environment, 0 for the threads): a block's threads run as ucontext fibers
/// on the launching thread, one after another from one __syncthreads to the next, instead of as
/// concurrent std::threads; the same per-phase line check, many times faster where barriers are
/// frequent, but data races inside a block cannot show (use the default mode with -fsanitize=thread
/// for those).
struct Fibers {
    bool active = false;
    int current = 0;
    ucontext_t scheduler;
    std::vector<ucontext_t> context;
    std::vector<std::unique_ptr<char[]>> stacks;
    void (*fn)(void *) = nullptr;
    void *ctx = nullptr;
    static constexpr size_t kStack = 256 * 1024;
};

inline Fibers fibers;

inline bool useFibers() {
    static const bool yes = [] {
        const char *e = std::getenv("KVCU_EMU_FIBERS");
        if (!e || !*e) return KVCU_EMU_FIBERS_DEFAULT != 0;
        return std::strcmp(e, "0") != 0;
    }();
    return yes;
}

inline void syncthreads(int line) {
    block.line[linearThread] = line;
    if (fibers.active) {
        swapcontext(&fibers.context[linearThread], &fibers.scheduler);
        return;
    }
    barrier->arrive_and_wait();
}

/// Runs one block as fibers: every live thread up to its next __syncthreads (or its return), then
/// the phase check, until all have returned.
inline void runBlockFibers(int threads, dim3 grid, dim3 shape, dim3 blockId, void (*fn)(void *), void *ctx) {
    Fibers &f = fibers;
    if ((int)f.stacks.size() < threads) {
        f.context.resize(threads);
        while ((int)f.stacks.size() < threads) f.stacks.emplace_back(new char[Fibers::kStack]);
    }
    f.fn = fn;
    f.ctx = ctx;
    for (int t = 0; t < threads; t++) {
        getcontext(&f.context[t]);
        f.context[t].uc_stack.ss_sp = f.stacks[t].get();
        f.context[t].uc_stack.ss_size = Fibers::kStack;
        f.context[t].uc_link = &f.scheduler;
        makecontext(&f.context[t], (void (*)())+[] {
            const int t = fibers.current;
            fibers.fn(fibers.ctx);
            block.gone[t] = 1;
        }, 0);
    }
    gridDim = grid;
    blockDim = shape;
    blockIdx = blockId;
    f.active = true;
    for (;;) {
        int live = 0;
        for (int t = 0; t < threads; t++) {
            if (block.gone[t]) continue;
            threadIdx = dim3(t % shape.x, (t / shape.x) % shape.y, t / (shape.x * shape.y));
            linearThread = t;
            f.current = t;
            swapcontext(&f.scheduler, &f.context[t]);
            live += !block.gone[t];
        }
        if (live == 0) break;
        PhaseCheck{}();
    }
    f.active = false;
}

}  // namespace emu

#define __syncthreads() emu::syncthreads(__LINE__)

namespace emu {

/// A persistent pool of worker threads, one per emulated CUDA thread of a block, reused across
/// blocks and launches (creating KVCU_THREADS std::threads per block costs far more than most
/// blocks' work). Runs one block at a time: runBlock wakes every worker, each sets its thread_local
/// ids and runs the kernel, and runBlock returns when all have returned. A request for another
/// block size replaces the workers.
class Pool {
public:
    static Pool &instance() {
        static Pool pool;
        return pool;
    }

    void runBlock(int threads, dim3 grid, dim3 shape, dim3 blockId, void (*fn)(void *), void *ctx) {
        if ((int)workers_.size() != threads) resize(threads);
        grid_ = grid;
        shape_ = shape;
        block_ = blockId;
        fn_ = fn;
        ctx_ = ctx;
        remaining_.store(threads, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
        generation_.notify_all();
        int left;
        while ((left = remaining_.load(std::memory_order_acquire)) != 0) remaining_.wait(left, std::memory_order_acquire);
    }

    ~Pool() { resize(0); }

private:
    Pool() = default;

    void resize(int threads) {
        if (!workers_.empty()) {
            stop_ = true;
            generation_.fetch_add(1, std::memory_order_release);
            generation_.notify_all();
            for (std::thread &w : workers_) w.join();
            workers_.clear();
            stop_ = false;
        }
        const unsigned now = generation_.load(std::memory_order_relaxed);
        workers_.reserve(threads);
        for (int t = 0; t < threads; t++) workers_.emplace_back([this, t, now] { work(t, now); });
    }

    void work(int t, unsigned seen);

    std::vector<std::thread> workers_;
    std::atomic<unsigned> generation_{0};
    std::atomic<int> remaining_{0};
    bool stop_ = false;
    dim3 grid_, shape_, block_;
    void (*fn_)(void *) = nullptr;
    void *ctx_ = nullptr;
};

inline void Pool::work(int t, unsigned seen) {
    for (;;) {
        generation_.wait(seen, std::memory_order_acquire);
        seen = generation_.load(std::memory_order_acquire);
        if (stop_) return;
        gridDim = grid_;
        blockDim = shape_;
        blockIdx = block_;
        threadIdx = dim3(t % shape_.x, (t / shape_.x) % shape_.y, t / (shape_.x * shape_.y));
        linearThread = t;
        fn_(ctx_);
        block.gone[t] = 1;
        barrier->arrive_and_drop();
        if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_one();
    }
}

inline std::mutex launchMutex;  // one launch at a time (the block state above is global)

}  // namespace emu

/// Runs `kernelCall` (a callable that calls one kernel function with its arguments) for every
/// thread of every block of `grid`: blocks one after another, each block's blockDim.x * y * z
/// threads on the workers of emu::Pool, concurrent std::threads that share the block's barrier.
/// Launches from several threads run one after another.
template <class F>
void emu_launch(dim3 grid, dim3 blockShape, F kernelCall) {
    const int threads = (int)(blockShape.x * blockShape.y * blockShape.z);
    if (threads <= 0) return;
    std::lock_guard<std::mutex> lock(emu::launchMutex);
    emu::Pool &pool = emu::Pool::instance();
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
                if (emu::useFibers()) {
                    emu::runBlockFibers(threads, grid, blockShape, dim3(bx, by, bz),
                                        [](void *call) { (*(F *)call)(); }, &kernelCall);
                    continue;
                }
                std::optional<std::barrier<emu::PhaseCheck>> bar;
                bar.emplace(threads, emu::PhaseCheck{});
                emu::barrier = &*bar;
                pool.runBlock(threads, grid, blockShape, dim3(bx, by, bz),
                              [](void *call) { (*(F *)call)(); }, &kernelCall);
                emu::barrier = nullptr;
            }
}

#endif
