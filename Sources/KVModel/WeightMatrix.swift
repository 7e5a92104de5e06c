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

    var rowBytes: Int { type.byteCount(elements: cols) }
    var byteCount: Int { rowBytes * rows }

    /// Whether this matrix runs on the integer fast path (block weights times q8 activations).
    var usesQuantizedActivations: Bool {
        type == .q8_0 || type == .q4_0 || type == .q4_1
    }

    /// `Y[i] = W X[i]` for `n` rows of `X` (`n x cols`, contiguous); `Y` has row stride `ldy`.
    /// `xq` holds the activations already quantized to q8_act blocks when
    /// ``usesQuantizedActivations`` (one row of `cols / 32` blocks per input row).
    /// Rows of `W` are split across the pool's threads.
    func apply(x: UnsafePointer<Float>, xq: UnsafePointer<kvk_block_q8_act>?, n: Int,
               y: UnsafeMutablePointer<Float>, ldy: Int, pool: ThreadPool) {
        let threads = pool.threadCount
        // Chunks a multiple of 16 rows so every thread gets whole SIMD tiles.
        let perChunk = max(16, ((rows + threads * 2 - 1) / (threads * 2) + 15) / 16 * 16)
        let chunks = (rows + perChunk - 1) / perChunk
        let rb = rowBytes
        let cols = cols
        let kt = type.kernelType
        let base = data
        pool.parallelFor(chunks) { c in
            let r0 = c * perChunk
            let r1 = min(rows, r0 + perChunk)
            let w = base + r0 * rb
            if let xq {
                if n == 1 {
                    kvk_matvec_q8act(kt, w, r1 - r0, cols, xq, y + r0)
                } else {
                    kvk_matmul_q8act(kt, w, r1 - r0, cols, xq, n, y + r0, ldy)
                }
            } else if n == 1 {
                kvk_matvec(kt, w, r1 - r0, cols, x, y + r0)
            } else {
                kvk_matmul(kt, w, r1 - r0, cols, x, n, y + r0, ldy)
            }
        }
    }
}
