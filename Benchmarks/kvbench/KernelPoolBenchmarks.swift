import CKVKernels
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

extension KernelBenchSection {
    /// RoPE of a 2048-token prefill (9 query heads, head dim 64), microseconds per call.
    static let rope = KernelBenchSection(name: "rope") { context in
        let rows = context.options.quick ? 256 : 2048, heads = 9, d = 64
        let x = UnsafeMutablePointer<Float>.allocate(capacity: rows * heads * d)
        defer { x.deallocate() }
        for i in 0..<(rows * heads * d) { x[i] = Float(i % 11) * 0.1 }
        let positions = (0..<rows).map { Int32($0) }
        let invFreq = (0..<(d / 2)).map { Float(pow(100_000.0, -2.0 * Double($0) / Double(d))) }
        let t = context.measure {
            kvk_rope(x, rows, heads, d, heads * d, positions, invFreq, KVK_ROPE_NEOX)
        }
        context.addValue(group: "kernels", name: "rope \(rows)x\(heads)x\(d)", threads: 1, value: t.min * 1e6,
                         unit: "us/call", timing: t)
    }
}
