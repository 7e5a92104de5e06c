import CKVKernels
import KVCore

/// The read-bandwidth reference of the benchmarks: kvk_sum_f32 over a buffer of a given size, split
/// into chunks over a pool's threads (one chunk on one thread).
final class ReadReference {
    /// Bytes one `run()` reads.
    let bytes: Int
    private let count: Int
    private let buffer: UnsafeMutablePointer<Float>
    private let sink: UnsafeMutablePointer<Float>
    private let chunks: Int
    private let pool: ThreadPool

    init(bytes: Int, pool: ThreadPool) {
        count = max(8, bytes / 4)
        self.bytes = count * 4
        buffer = .allocate(capacity: count)
        for i in 0..<count { buffer[i] = Float(i & 7) }
        chunks = pool.threadCount == 1 ? 1 : pool.threadCount * 4
        sink = .allocate(capacity: chunks)
        self.pool = pool
    }

    deinit {
        buffer.deallocate()
        sink.deallocate()
    }

    /// Reads the whole buffer once.
    func run() {
        let (n, chunks, buffer, sink) = (count, chunks, buffer, sink)
        pool.parallelFor(chunks) { c in
            let lo = n * c / chunks, hi = n * (c + 1) / chunks
            sink[c] = kvk_sum_f32(buffer + lo, hi - lo)
        }
    }
}
