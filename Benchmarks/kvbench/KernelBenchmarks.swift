import CKVKernels
import Foundation
import KVCore

extension BenchGroup {
    /// `kvbench kernels`: kernel throughput against same-run read bandwidth.
    static let kernels = BenchGroup(
        name: "kernels",
        summary: "matvec per weight format (GB/s of weights), attention kernels; vs same-run read bandwidth",
        run: { context in
            if context.options.backend == .cuda {
                CudaBenchmarks.run(context)
                return
            }
            let clock = { String(format: "%.2f", BenchContext.estimatedClockGHz()) }
            if !context.options.json {
                print("kernels: ISA \(Kernels.isa) (best \(Kernels.bestISA)), threads \(context.options.threads), "
                      + "core clock ~\(clock()) GHz")
            }
            let wanted = context.options.sections
            for section in KernelBenchmarks.sections where wanted.isEmpty || wanted.contains(section.name) {
                section.run(context)
            }
            // compute-bound kernels follow the clock, reads much less: a ratio moves with it
            if !context.options.json { print("kernels: core clock at the end ~\(clock()) GHz") }
        })
}

/// A part of `kvbench kernels`. Other files add their own sections (e.g. attention) with one line
/// in ``KernelBenchmarks/sections``.
struct KernelBenchSection: Sendable {
    let name: String
    let run: @Sendable (BenchContext) -> Void
}

/// Registry of the `kernels` group's sections.
enum KernelBenchmarks {
    /// Sections in run order: add a line here for a new section defined in its own file.
    static let sections: [KernelBenchSection] = [
        .threadPool,
        .rope,
        .matvec,
        .matmul,
        .cacheKernels,
        .attention,
    ]
}

extension KernelBenchSection {
    /// matvec GB/s (weight bytes per second) per weight format, with the f32-activation path and,
    /// for block formats, the int8-activation path (activation quantization included in the time);
    /// rows split across the pool in 4-row-aligned chunks.
    static let matvec = KernelBenchSection(name: "matvec") { context in
        // The last shape (70-120 MB of weights) is far larger than any CPU cache: the weights come from
        // memory, as in a decode step of the whole model.
        let shapes: [(rows: Int, cols: Int)] = context.options.quick ? [(256, 576)]
            : [(1536, 576), (49152, 576), (196_608, 576)]
        for shape in shapes {
            let formats: [ElementType] = shape.rows > 49152 ? [.q8_0, .q4_1] : [.f32, .f16, .q8_0, .q4_0, .q4_1]
            for format in formats {
                let rowBytes = format.byteCount(elements: shape.cols)
                let bytes = rowBytes * shape.rows
                let w = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                defer { w.deallocate() }
                fillMatrix(format, w, rows: shape.rows, cols: shape.cols)
                let x = UnsafeMutablePointer<Float>.allocate(capacity: shape.cols)
                defer { x.deallocate() }
                for i in 0..<shape.cols { x[i] = Float(i % 13) * 0.01 - 0.06 }
                let y = UnsafeMutablePointer<Float>.allocate(capacity: shape.rows)
                defer { y.deallocate() }
                let xq = UnsafeMutablePointer<kvk_block_q8_act>.allocate(capacity: shape.cols / 32)
                defer { xq.deallocate() }
                // the four-row layout the model packs its weights into where this ISA prefers it
                let packed: UnsafeMutableRawPointer? = kvk_rows4_preferred(format.kernelType) != 0
                    ? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64) : nil
                defer { packed?.deallocate() }
                if let packed { kvk_pack_rows4(format.kernelType, w, shape.rows, shape.cols, packed) }
                for threads in context.options.threads {
                    let pool = context.pool(threads)
                    let chunks = split(rows: shape.rows, threads: threads)
                    let label = "matvec \(format) \(shape.rows)x\(shape.cols)"
                    context.addThroughput(group: "kernels", name: label, threads: threads, bytes: bytes) {
                        pool.parallelFor(chunks.count) { c in
                            let (lo, hi) = chunks[c]
                            kvk_matvec(format.kernelType, w + lo * rowBytes, hi - lo, shape.cols, x, y + lo)
                        }
                    }
                    if format.isBlockQuantized {
                        // target for the memory-resident shape (a whole model's weights) on the layout the
                        // model uses: >= 0.7 of the read
                        let targeted = shape.rows > 49152 && (format == .q8_0 || format == .q4_1)
                        let verdict = { (layoutUsed: Bool) in { (_: Double, ratio: Double) -> String? in
                            targeted && layoutUsed ? BenchContext.target(">= 0.7 of read", met: ratio >= 0.7) : nil
                        } }
                        context.addThroughput(group: "kernels", name: label + " q8act", threads: threads, bytes: bytes,
                                              verdict: verdict(packed == nil)) {
                            kvk_quantize_act(x, xq, shape.cols)
                            pool.parallelFor(chunks.count) { c in
                                let (lo, hi) = chunks[c]
                                kvk_matvec_q8act(format.kernelType, w + lo * rowBytes, hi - lo, shape.cols, xq, y + lo)
                            }
                        }
                        if let packed {
                            context.addThroughput(group: "kernels", name: label + " q8act rows4", threads: threads,
                                                  bytes: bytes, verdict: verdict(true)) {
                                kvk_quantize_act(x, xq, shape.cols)
                                pool.parallelFor(chunks.count) { c in
                                    let (lo, hi) = chunks[c]
                                    kvk_matmul_q8act_rows4(format.kernelType, packed + lo * rowBytes, hi - lo, shape.cols,
                                                           xq, 1, y + lo, shape.rows)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Row ranges (multiples of 4 rows) for `threads` threads: a few chunks per thread.
    static func split(rows: Int, threads: Int) -> [(Int, Int)] {
        let count = threads == 1 ? 1 : threads * 4
        var out: [(Int, Int)] = []
        for c in 0..<count {
            let lo = (rows * c / count) & ~3, hi = c == count - 1 ? rows : (rows * (c + 1) / count) & ~3
            if hi > lo { out.append((lo, hi)) }
        }
        return out
    }

    /// Fills a rows x cols matrix of `format` with deterministic pseudo-random weights.
    static func fillMatrix(_ format: ElementType, _ w: UnsafeMutableRawPointer, rows: Int, cols: Int) {
        let row = UnsafeMutablePointer<Float>.allocate(capacity: cols)
        defer { row.deallocate() }
        var state: UInt32 = 12345
        let rowBytes = format.byteCount(elements: cols)
        for r in 0..<rows {
            for i in 0..<cols {
                state = state &* 1_664_525 &+ 1_013_904_223
                row[i] = Float(Int32(bitPattern: state) >> 8) / Float(1 << 23) * 0.1
            }
            kvk_quantize(format.kernelType, row, w + r * rowBytes, cols)
        }
    }
}
