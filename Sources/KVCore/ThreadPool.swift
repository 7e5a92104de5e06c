import CKVKernels
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed pool of worker threads for data-parallel loops (`parallelFor`).
///
/// Built for many short parallel regions in a row (hundreds per decode step): workers spin briefly
/// after each region, waiting for the next one, and only then park on a condition variable, so a
/// region costs about a microsecond of fork/join overhead while the pool is busy and nothing while
/// it is idle. The calling thread participates in the work.
///
/// Work is handed out dynamically in chunks (about four per participant), so a descheduled or slow
/// thread does not hold the others back.
///
/// Nested use is safe: a `parallelFor` issued from inside a body (of this or any other pool), or
/// from a second thread while the pool is busy, runs serially on the calling thread.
public final class ThreadPool: @unchecked Sendable {
    /// Number of threads that run a parallel loop, the caller included (`threads - 1` workers).
    public let threadCount: Int

    private let state: State

    /// Creates a pool.
    /// - Parameter threads: threads taking part in each loop, the caller included; `threads - 1`
    ///   worker threads are started.
    /// - Precondition: `threads >= 1`.
    public init(threads: Int) {
        precondition(threads >= 1, "ThreadPool needs at least 1 thread, got \(threads)")
        threadCount = threads
        state = State(workers: threads - 1)
        for index in 0..<(threads - 1) {
            let state = self.state
            let thread = Thread { state.workerLoop() }
            thread.name = "kvcompress.pool.\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    deinit {
        state.shutdown()
    }

    /// Runs `body(i)` for every `i` in `0..<count`, split across the pool; returns when all are done.
    ///
    /// Each index runs exactly once; which thread runs it, and in which order, is unspecified, so
    /// `body` must only write disjoint memory per index. A call made from inside a body (nested), or
    /// while another thread is using this pool, runs serially on the calling thread.
    /// - Complexity: O(count) calls of `body`, plus one fork/join (about a microsecond when the
    ///   workers are awake).
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if threadCount == 1 || count == 1 || ThreadPool.insideParallelRegion || !state.submitLock.try() {
            for i in 0..<count { body(i) }
            return
        }
        defer { state.submitLock.unlock() }
        ThreadPool.insideParallelRegion = true
        defer { ThreadPool.insideParallelRegion = false }
        withoutActuallyEscaping(body) { escapable in
            state.run(count: count, chunk: max(1, count / (threadCount * 4)), body: escapable)
        }
    }

    /// Process-wide pool: the `KVCOMPRESS_THREADS` environment variable if set to a positive
    /// integer, else the active processor count.
    public static let shared: ThreadPool = {
        if let text = ProcessInfo.processInfo.environment["KVCOMPRESS_THREADS"], let n = Int(text), n >= 1 {
            return ThreadPool(threads: n)
        }
        return ThreadPool(threads: max(1, ProcessInfo.processInfo.activeProcessorCount))
    }()

    // MARK: - nesting flag (per thread)

    private static let depthKey: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key, nil)
        precondition(rc == 0, "pthread_key_create failed (\(rc))")
        return key
    }()

    /// Whether the current thread is running inside a parallel region (worker or caller).
    static var insideParallelRegion: Bool {
        get { pthread_getspecific(depthKey) != nil }
        set { pthread_setspecific(depthKey, newValue ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }

    // MARK: - shared state between the caller and the workers

    /// State the workers hold (not the pool, so that dropping the pool stops them).
    final class State: @unchecked Sendable {
        let workers: Int
        /// Spin iterations (with a CPU pause) before a worker parks.
        static let spinLimit = 30_000
        /// Of those, the first iterations only pause (no yield).
        static let pureSpins = 2_000
        // Atomic words, one per cache line: generation, pending, next, count, chunk, sleepers, stop.
        private let words: UnsafeMutablePointer<Int>
        private var generation: UnsafeMutablePointer<Int> { words }
        private var pending: UnsafeMutablePointer<Int> { words + 8 }
        private var next: UnsafeMutablePointer<Int> { words + 16 }
        private var count: UnsafeMutablePointer<Int> { words + 24 }
        private var chunk: UnsafeMutablePointer<Int> { words + 32 }
        private var sleepers: UnsafeMutablePointer<Int> { words + 40 }
        private var stop: UnsafeMutablePointer<Int> { words + 48 }
        /// The current loop body; written only while no worker is running a region.
        private var job: ((Int) -> Void)?
        private let condition = NSCondition()
        let submitLock = NSLock()

        init(workers: Int) {
            self.workers = workers
            words = .allocate(capacity: 64)
            words.initialize(repeating: 0, count: 64)
        }

        deinit {
            words.deallocate()
        }

        /// Publishes a region, takes part in it, and waits for every worker to finish it.
        func run(count n: Int, chunk c: Int, body: @escaping (Int) -> Void) {
            job = body
            kvk_atomic_store(count, n)
            kvk_atomic_store(chunk, c)
            kvk_atomic_store(next, 0)
            kvk_atomic_store(pending, workers)
            _ = kvk_atomic_fetch_add(generation, 1)
            if kvk_atomic_load(sleepers) > 0 {
                condition.lock()
                condition.broadcast()
                condition.unlock()
            }
            work(body)
            var spins = 0
            while kvk_atomic_load(pending) != 0 {
                spins += 1
                if spins < 4096 { kvk_cpu_relax() } else { sched_yield() }
            }
            job = nil
        }

        /// Claims chunks of the current region until none is left.
        private func work(_ body: (Int) -> Void) {
            let n = kvk_atomic_load(count), c = kvk_atomic_load(chunk)
            while true {
                let start = kvk_atomic_fetch_add(next, c)
                if start >= n { return }
                for i in start..<min(start + c, n) { body(i) }
            }
        }

        private func runCurrentJob() {
            guard let body = job else { return }
            work(body)
        }

        func workerLoop() {
            ThreadPool.insideParallelRegion = true
            var seen = 0
            while true {
                var g = kvk_atomic_load(generation)
                var spins = 0
                while g == seen {
                    if spins < State.spinLimit {
                        // pause-spin first; then also yield, so an oversubscribed core can run
                        // the thread the current region is waiting for
                        if spins < State.pureSpins || spins & 15 != 0 { kvk_cpu_relax() } else { sched_yield() }
                        spins += 1
                    } else {
                        condition.lock()
                        _ = kvk_atomic_fetch_add(sleepers, 1)
                        while kvk_atomic_load(generation) == seen { condition.wait() }
                        _ = kvk_atomic_fetch_add(sleepers, -1)
                        condition.unlock()
                    }
                    g = kvk_atomic_load(generation)
                }
                seen = g
                if kvk_atomic_load(stop) != 0 { return }
                runCurrentJob()
                _ = kvk_atomic_fetch_add(pending, -1)
            }
        }

        /// Stops the workers (they exit at their next wake-up).
        func shutdown() {
            kvk_atomic_store(stop, 1)
            _ = kvk_atomic_fetch_add(generation, 1)
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }
}
