import CKVKernels
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed pool of worker threads for data-parallel loops (`parallelFor`, `parallelRanges`).
///
/// Built for many short parallel regions in a row (hundreds per decode step): workers spin briefly
/// after each region, waiting for the next one, and only then park on a condition variable, so a
/// region costs about a microsecond of fork/join overhead while the pool is busy and nothing while
/// it is idle. The calling thread participates in the work.
///
/// Work is handed out dynamically, in ranges that shrink as the loop nears its end (guided
/// self-scheduling), so a descheduled or slow thread does not hold the others back and the threads
/// finish together.
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
        parallelRanges(count) { range in
            for i in range { body(i) }
        }
    }

    /// Runs `body` on consecutive ranges that together cover `0..<count` once each, split across the
    /// pool; returns when all are done.
    ///
    /// Ranges are claimed by guided self-scheduling: each claim takes half of a participant's share of
    /// what is left (`left / (2 x threads)` indices, at least one), so the first claims are long (few
    /// hand-offs) and the last are single indices (the threads finish together). Give indices of about
    /// equal cost. Same nesting and disjoint-writes rules as ``parallelFor(_:_:)``.
    public func parallelRanges(_ count: Int, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        if threadCount == 1 || count == 1 || ThreadPool.insideParallelRegion || !state.submitLock.try() {
            body(0..<count)
            return
        }
        defer { state.submitLock.unlock() }
        ThreadPool.insideParallelRegion = true
        defer { ThreadPool.insideParallelRegion = false }
        withoutActuallyEscaping(body) { escapable in
            state.run(count: count, divisor: threadCount * 2, body: escapable)
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
    ///
    /// Protocol: the caller publishes a region (job, count, divisor) and bumps `generation`; a worker
    /// that sees a new generation *joins* it by incrementing `ticket` (which encodes the generation),
    /// then claims chunks and finally increments `finished`. When the caller has run out of chunks it
    /// closes the ticket (exchange with -1), learning how many workers joined, and waits only for
    /// those. A worker that was descheduled (or parked) and comes late never joins a closed region,
    /// so the caller never waits for a thread that is not running.
    final class State: @unchecked Sendable {
        let workers: Int
        /// Spin iterations (with a CPU pause) before a worker parks.
        static let spinLimit = 30_000
        /// Of those, the first iterations only pause (no yield).
        static let pureSpins = 2_000
        // Atomic words, one per cache line.
        private let words: UnsafeMutablePointer<Int>
        private var generation: UnsafeMutablePointer<Int> { words }
        private var ticket: UnsafeMutablePointer<Int> { words + 8 }
        private var finished: UnsafeMutablePointer<Int> { words + 16 }
        private var next: UnsafeMutablePointer<Int> { words + 24 }
        private var count: UnsafeMutablePointer<Int> { words + 32 }
        private var divisor: UnsafeMutablePointer<Int> { words + 40 }
        private var sleepers: UnsafeMutablePointer<Int> { words + 48 }
        private var stop: UnsafeMutablePointer<Int> { words + 56 }
        private static let joinBits = 12
        /// The current loop body; written only while no worker has joined a region.
        private var job: ((Range<Int>) -> Void)?
        /// The caller's copy of the generation counter (only the caller writes `generation`).
        private var published = 0
        private let condition = NSCondition()
        let submitLock = NSLock()

        init(workers: Int) {
            self.workers = workers
            words = .allocate(capacity: 72)
            words.initialize(repeating: 0, count: 72)
            kvk_atomic_store(ticket, -1)
        }

        deinit {
            words.deallocate()
        }

        /// Publishes a region, takes part in it, and waits for every worker that joined it.
        func run(count n: Int, divisor d: Int, body: @escaping (Range<Int>) -> Void) {
            job = body
            kvk_atomic_store(count, n)
            kvk_atomic_store(divisor, d)
            kvk_atomic_store(next, 0)
            kvk_atomic_store(finished, 0)
            published += 1
            kvk_atomic_store(ticket, published << State.joinBits)
            kvk_atomic_store(generation, published)
            if kvk_atomic_load(sleepers) > 0 {
                condition.lock()
                condition.broadcast()
                condition.unlock()
            }
            work(body)
            let joined = kvk_atomic_exchange(ticket, -1) & ((1 << State.joinBits) - 1)
            var spins = 0
            while kvk_atomic_load(finished) < joined {
                spins += 1
                if spins < 256 { kvk_cpu_relax() } else { sched_yield() }
            }
            job = nil
        }

        /// Joins region `g` if it is still open.
        private func join(_ g: Int) -> Bool {
            while true {
                let t = kvk_atomic_load(ticket)
                if t < 0 || t >> State.joinBits != g { return false }
                if kvk_atomic_cas(ticket, t, t + 1) != 0 { return true }
            }
        }

        /// Claims ranges of the current region until none is left: `left / divisor` indices each, at
        /// least one.
        private func work(_ body: (Range<Int>) -> Void) {
            let n = kvk_atomic_load(count), d = kvk_atomic_load(divisor)
            while true {
                let start = kvk_atomic_load(next)
                if start >= n { return }
                let end = start + max(1, (n - start) / d)
                if kvk_atomic_cas(next, start, end) != 0 { body(start..<end) }
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
                if join(g) {
                    runCurrentJob()
                    _ = kvk_atomic_fetch_add(finished, 1)
                }
            }
        }

        /// Stops the workers (they exit at their next wake-up).
        func shutdown() {
            kvk_atomic_store(stop, 1)
            _ = kvk_atomic_fetch_add(generation, 1) // no region is running (the owner is gone)
            condition.lock()
            condition.broadcast()
            condition.unlock()
        }
    }
}
