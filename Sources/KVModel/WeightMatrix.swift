import CKVKernels
import KVCore

/// A row-major weight matrix in one of the GGUF element types, viewed in place (memory-mapped
/// file or an owned buffer kept alive by the model).
///
/// `y = W x` has `rows` outputs and `cols` inputs; row `r` starts at `data + r * rowBytes`.
struct WeightMatrix: @unchecked Sendable {
    let name: String
    let type: ElementType
    let data: UnsafeRawPointer
    let rows: Int
    let cols: Int
    /// The same matrix in `kvk_pack_rows4`'s four-row layout, where the active kernels are faster on it
    /// (Q4_1 and Q8_0 on AVX2; see `kvk_rows4_preferred`); the integer fast path then reads it instead of `data`,
    /// which the float paths (gradients, dequantized copies) keep reading.
    var packed: UnsafeRawPointer? = nil

    var rowBytes: Int { type.byteCount(elements: cols) }
    var byteCount: Int { rowBytes * rows }

    /// Whether this matrix runs on the integer fast path (block weights times q8 activations).
    var usesQuantizedActivations: Bool {
        type == .q8_0 || type == .q4_0 || type == .q4_1
    }

    /// `Y_k[i] = W_k X[i]` for several matrices over the same `n` rows of `X` (`n x cols`,
    /// contiguous), each `Y_k` with row stride `W_k.rows`. `xq` holds the activations already
    /// quantized to q8_act blocks (one row of `cols / 32` blocks per input row), which the matrices
    /// with ``usesQuantizedActivations`` use. Rows are split into chunks that go to the pool's
    /// threads in one parallel region, so a small matrix (a layer's K or V projection) costs no
    /// hand-off of its own.
    static func apply(_ jobs: [(matrix: WeightMatrix, y: UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>,
                      xq: UnsafePointer<kvk_block_q8_act>?, n: Int, pool: ThreadPool) {
        let threads = pool.threadCount
        // Chunks a multiple of 16 rows so every thread gets whole SIMD tiles.
        var chunks: [(job: Int, r0: Int, r1: Int)] = []
        for (j, job) in jobs.enumerated() {
            let rows = job.matrix.rows
            let perChunk = max(16, ((rows + threads * 2 - 1) / (threads * 2) + 15) / 16 * 16)
            for r0 in stride(from: 0, to: rows, by: perChunk) { chunks.append((j, r0, min(rows, r0 + perChunk))) }
        }
        pool.parallelFor(chunks.count) { c in
            let (j, r0, r1) = chunks[c]
            let (m, y) = jobs[j]
            let w = m.data + r0 * m.rowBytes
            let kt = m.type.kernelType
            if let xq, let p = m.packed {
                // chunks start at multiples of 16 rows: whole four-row groups of the packed layout
                kvk_matmul_q8act_rows4(kt, p + r0 * m.rowBytes, r1 - r0, m.cols, xq, n, y + r0, m.rows)
            } else if let xq, m.usesQuantizedActivations {
                if n == 1 {
                    kvk_matvec_q8act(kt, w, r1 - r0, m.cols, xq, y + r0)
                } else {
                    kvk_matmul_q8act(kt, w, r1 - r0, m.cols, xq, n, y + r0, m.rows)
                }
            } else if n == 1 {
                kvk_matvec(kt, w, r1 - r0, m.cols, x, y + r0)
            } else {
                kvk_matmul(kt, w, r1 - r0, m.cols, x, n, y + r0, m.rows)
            }
        }
    }
}
