import CKVKernels
import Foundation
import KVCore

extension KernelBenchSection {
    /// Raw cache kernels for one KV head at decode: kvk_scores and kvk_weighted_sum over n cached
    /// rows (head dim 64) per cache type, in GB/s of cache bytes read; threads split the rows.
    static let cacheKernels = KernelBenchSection(name: "cache") { context in
        let n = context.options.quick ? 1024 : (ProcessInfo.processInfo.environment["KVBENCH_CACHE_TOKENS"].flatMap { Int($0) } ?? 16384)
        let d = 64
        for type in [ElementType.f32, .f16, .q8_0, .q4_0] {
            let rowBytes = type.byteCount(elements: d)
            let bytes = n * rowBytes
            let rows = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer { rows.deallocate() }
            KernelBenchSection.fillMatrix(type, rows, rows: n, cols: d)
            let q = UnsafeMutablePointer<Float>.allocate(capacity: d)
            defer { q.deallocate() }
            for i in 0..<d { q[i] = Float(i % 7) * 0.1 - 0.3 }
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { scores.deallocate() }
            for j in 0..<n { scores[j] = 1 / Float(n) }
            for threads in context.options.threads {
                let pool = context.pool(threads)
                let chunks = KernelBenchSection.split(rows: n, threads: threads)
                let partial = UnsafeMutablePointer<Float>.allocate(capacity: chunks.count * d)
                defer { partial.deallocate() }
                context.addThroughput(group: "kernels", name: "scores \(type) \(n)x\(d)", threads: threads, bytes: bytes) {
                    pool.parallelFor(chunks.count) { c in
                        let (lo, hi) = chunks[c]
                        kvk_scores(type.kernelType, q, rows + lo * rowBytes, rowBytes, hi - lo, d, 0.125, scores + lo)
                    }
                }
                for j in 0..<n { scores[j] = 1 / Float(n) }
                context.addThroughput(group: "kernels", name: "weighted_sum \(type) \(n)x\(d)", threads: threads,
                                      bytes: bytes) {
                    pool.parallelFor(chunks.count) { c in
                        let (lo, hi) = chunks[c]
                        let out = partial + c * d
                        out.initialize(repeating: 0, count: d)
                        kvk_weighted_sum(type.kernelType, scores + lo, rows + lo * rowBytes, rowBytes, hi - lo, d, out)
                    }
                }
                // the 3 query heads of a GQA group (SmolLM2: 9 q heads / 3 kv heads) in one pass
                let m = 3
                let qm = UnsafeMutablePointer<Float>.allocate(capacity: m * d)
                defer { qm.deallocate() }
                for i in 0..<(m * d) { qm[i] = Float(i % 9) * 0.1 - 0.4 }
                let sm = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
                defer { sm.deallocate() }
                context.addThroughput(group: "kernels", name: "scores_multi m=3 \(type) \(n)x\(d)", threads: threads,
                                      bytes: bytes) {
                    pool.parallelFor(chunks.count) { c in
                        let (lo, hi) = chunks[c]
                        kvk_scores_multi(type.kernelType, qm, d, m, rows + lo * rowBytes, rowBytes, hi - lo, d, 0.125,
                                         sm + lo, n)
                    }
                }
                for j in 0..<(m * n) { sm[j] = 1 / Float(n) }
                let pm = UnsafeMutablePointer<Float>.allocate(capacity: chunks.count * m * d)
                defer { pm.deallocate() }
                context.addThroughput(group: "kernels", name: "weighted_sum_multi m=3 \(type) \(n)x\(d)",
                                      threads: threads, bytes: bytes) {
                    pool.parallelFor(chunks.count) { c in
                        let (lo, hi) = chunks[c]
                        let out = pm + c * m * d
                        out.initialize(repeating: 0, count: m * d)
                        kvk_weighted_sum_multi(type.kernelType, sm + lo, n, m, rows + lo * rowBytes, rowBytes, hi - lo, d,
                                               out, d)
                    }
                }
            }
        }
    }

    /// Prefill-style batched products: kvk_matmul_q8act (and kvk_matmul for reference) of a
    /// 1536x576 weight with 64 activation rows, in GMAC/s; the note converts to SmolLM2-135M
    /// prefill tokens/s for the matrix products alone (106 M MAC per token).
    static let matmul = KernelBenchSection(name: "matmul") { context in
        let rows = 1536, cols = 576, n = context.options.quick ? 16 : 64
        for format in [ElementType.q4_1, .q8_0] {
            let rowBytes = format.byteCount(elements: cols)
            let w = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 64)
            defer { w.deallocate() }
            KernelBenchSection.fillMatrix(format, w, rows: rows, cols: cols)
            let x = UnsafeMutablePointer<Float>.allocate(capacity: n * cols)
            defer { x.deallocate() }
            for i in 0..<(n * cols) { x[i] = Float(i % 17) * 0.01 - 0.08 }
            let xq = UnsafeMutablePointer<kvk_block_q8_act>.allocate(capacity: n * cols / 32)
            defer { xq.deallocate() }
            let y = UnsafeMutablePointer<Float>.allocate(capacity: n * rows)
            defer { y.deallocate() }
            for threads in context.options.threads {
                let pool = context.pool(threads)
                let chunks = KernelBenchSection.split(rows: rows, threads: threads)
                let t = context.measure {
                    kvk_quantize_act(x, xq, n * cols)
                    pool.parallelFor(chunks.count) { c in
                        let (lo, hi) = chunks[c]
                        kvk_matmul_q8act(format.kernelType, w + lo * rowBytes, hi - lo, cols, xq, n, y + lo, rows)
                    }
                }
                let gmac = Double(rows * cols * n) / t.min / 1e9
                context.addValue(group: "kernels", name: "matmul_q8act \(format) \(rows)x\(cols) n=\(n)", threads: threads,
                                 value: gmac, unit: "GMAC/s", timing: t,
                                 note: String(format: "~%.0f tok/s of 135M matmuls", gmac * 1e9 / 106e6))
                let tf = context.measure {
                    pool.parallelFor(chunks.count) { c in
                        let (lo, hi) = chunks[c]
                        kvk_matmul(format.kernelType, w + lo * rowBytes, hi - lo, cols, x, n, y + lo, rows)
                    }
                }
                context.addValue(group: "kernels", name: "matmul f32-act \(format) \(rows)x\(cols) n=\(n)", threads: threads,
                                 value: Double(rows * cols * n) / tf.min / 1e9, unit: "GMAC/s", timing: tf)
            }
        }
    }
}
