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
    /// with ``usesQuantizedActivations`` use. The matrices' rows, in units of 16 (whole SIMD tiles and
    /// four-row groups), go to the pool's threads in one parallel region (guided: long ranges first,
    /// single units last), so a small matrix (a layer's K or V projection) costs no hand-off of its own.
    static func apply(_ jobs: [(matrix: WeightMatrix, y: UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>,
                      xq: UnsafePointer<kvk_block_q8_act>?, n: Int, pool: ThreadPool) {
        let unit = 16
        let units = jobs.reduce(0) { $0 + ($1.matrix.rows + unit - 1) / unit }
        pool.parallelRanges(units) { claimed in
            var first = 0  // the first unit of job j
            for (m, y) in jobs {
                let count = (m.rows + unit - 1) / unit
                let lo = max(claimed.lowerBound, first), hi = min(claimed.upperBound, first + count)
                first += count
                guard lo < hi else { continue }
                let r0 = (lo - first + count) * unit, r1 = min(m.rows, (hi - first + count) * unit)
                m.product(rows: r0..<r1, x: x, xq: xq, n: n, y: y, yStride: m.rows)
            }
        }
    }

    /// Rows `rows` of `Y[i] = W X[i]` (row `i` of `Y` at `y + i * yStride`), for ``apply(_:x:xq:n:pool:)``;
    /// `rows` starts at a multiple of 4 (a four-row group of the packed layout).
    private func product(rows: Range<Int>, x: UnsafePointer<Float>, xq: UnsafePointer<kvk_block_q8_act>?, n: Int,
                         y: UnsafeMutablePointer<Float>, yStride: Int) {
        let (r0, count) = (rows.lowerBound, rows.count)
        let w = data + r0 * rowBytes
        let kt = type.kernelType
        if let xq, let packed {
            kvk_matmul_q8act_rows4(kt, packed + r0 * rowBytes, count, cols, xq, n, y + r0, yStride)
        } else if let xq, usesQuantizedActivations {
            if n == 1 {
                kvk_matvec_q8act(kt, w, count, cols, xq, y + r0)
            } else {
                kvk_matmul_q8act(kt, w, count, cols, xq, n, y + r0, yStride)
            }
        } else if n == 1 {
            kvk_matvec(kt, w, count, cols, x, y + r0)
        } else {
            kvk_matmul(kt, w, count, cols, x, n, y + r0, yStride)
        }
    }
}
