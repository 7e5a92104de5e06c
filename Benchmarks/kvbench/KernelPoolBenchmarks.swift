import Foundation
import KVCore

extension KernelBenchSection {
    /// ThreadPool fork/join cost: an (almost) empty parallelFor, as issued hundreds of times per
    /// decode step, in microseconds per call.
    static let threadPool = KernelBenchSection(name: "pool") { context in
        for threads in context.options.threads {
            let pool = context.pool(threads)
            let count = threads * 4
            let sink = UnsafeMutablePointer<Int>.allocate(capacity: count)
            defer { sink.deallocate() }
            let t = context.measure {
                pool.parallelFor(count) { i in sink[i] = i }
            }
            context.addValue(group: "kernels", name: "threadpool parallelFor(\(count)) empty", threads: threads,
                             value: t.min * 1e6, unit: "us/call", timing: t)
        }
    }
}
