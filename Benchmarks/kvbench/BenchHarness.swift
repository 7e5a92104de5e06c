import CKVKernels
import Dispatch
import Foundation
import KVCore

/// What a group gets: the options, a report to add rows to, and measurement helpers.
final class BenchContext: @unchecked Sendable {
    let options: BenchOptions
    let report = BenchReport()
    private var pools: [Int: ThreadPool] = [:]

    init(options: BenchOptions) { self.options = options }

    /// A pool with `threads` threads (created once per count).
    func pool(_ threads: Int) -> ThreadPool {
        if let p = pools[threads] { return p }
        let p = ThreadPool(threads: threads)
        pools[threads] = p
        return p
    }

    /// Samples per measurement (after warm-up).
    var repetitions: Int { options.quick ? 3 : 11 }

    /// Times `body`: calibrates an inner repeat count so one sample lasts at least ~2 ms (0.5 ms
    /// with --quick), runs warm-up samples, then returns per-call seconds (minimum, median).
    func measure(_ body: () -> Void) -> Timing {
        let target: UInt64 = options.quick ? 500_000 : 2_000_000
        var inner = 1
        while true {
            let t = time(inner, body)
            if t >= target || inner >= 1 << 20 { break }
            inner = t == 0 ? inner * 16 : min(inner * 16, max(inner * 2, Int(Double(inner) * Double(target) / Double(t)) + 1))
        }
        for _ in 0..<2 { _ = time(inner, body) } // warm-up
        var samples = (0..<repetitions).map { _ in Double(time(inner, body)) / 1e9 / Double(inner) }
        samples.sort()
        return Timing(min: samples[0], median: samples[samples.count / 2])
    }

    private func time(_ inner: Int, _ body: () -> Void) -> UInt64 {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<inner { body() }
        return DispatchTime.now().uptimeNanoseconds - start
    }

    /// Read bandwidth in bytes/s over a buffer of `bytes` bytes with `threads` threads (kvk_sum_f32
    /// over disjoint slices), measured now: the reference every throughput is compared with.
    func readBandwidth(bytes: Int, threads: Int) -> Double {
        let n = max(8, bytes / 4)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { buffer.deallocate() }
        for i in 0..<n { buffer[i] = Float(i & 7) }
        let pool = self.pool(threads)
        let chunks = threads == 1 ? 1 : threads * 4
        let sink = UnsafeMutablePointer<Float>.allocate(capacity: chunks)
        defer { sink.deallocate() }
        let timing = measure {
            pool.parallelFor(chunks) { c in
                let lo = n * c / chunks, hi = n * (c + 1) / chunks
                sink[c] = kvk_sum_f32(buffer + lo, hi - lo)
            }
        }
        return Double(n * 4) / timing.min
    }
}

/// Per-call seconds of a measurement.
struct Timing: Sendable {
    var min: Double
    var median: Double
}

/// One result line.
struct BenchRow: Codable, Sendable {
    var group: String
    var name: String
    var threads: Int
    /// What was measured, in the unit below (from the best run).
    var value: Double
    var unit: String
    /// Seconds per call.
    var minSeconds: Double
    var medianSeconds: Double
    /// Same-run read bandwidth (GB/s) over the same bytes and threads, and value / it (when the
    /// value is a byte rate).
    var readGBps: Double?
    var ratio: Double?
    var note: String?
}

/// Collects rows; prints them as they come (table) or all at the end (JSON).
final class BenchReport: @unchecked Sendable {
    private(set) var rows: [BenchRow] = []
    private var printedHeader = false

    func add(_ row: BenchRow, json: Bool) {
        rows.append(row)
        if json { return }
        if !printedHeader {
            printedHeader = true
            print(pad("benchmark", 44) + pad("thr", 4) + pad("value", 16) + pad("min", 11) + pad("median", 11)
                  + pad("read GB/s", 10) + "ratio")
        }
        let value = String(format: "%.2f %@", row.value, row.unit)
        let read = row.readGBps.map { String(format: "%.2f", $0) } ?? "-"
        let ratio = row.ratio.map { String(format: "%.2f", $0) } ?? "-"
        print(pad("\(row.group)/\(row.name)", 44) + pad("\(row.threads)", 4) + pad(value, 16)
              + pad(formatSeconds(row.minSeconds), 11) + pad(formatSeconds(row.medianSeconds), 11) + pad(read, 10) + ratio
              + (row.note.map { "  (\($0))" } ?? ""))
    }

    func finish(json: Bool) {
        guard json else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let data = try? encoder.encode(rows), let text = String(data: data, encoding: .utf8) { print(text) }
    }

    private func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s + " " : s.padding(toLength: n, withPad: " ", startingAt: 0)
    }

    private func formatSeconds(_ s: Double) -> String {
        if s < 1e-3 { return String(format: "%.1f us", s * 1e6) }
        if s < 1 { return String(format: "%.2f ms", s * 1e3) }
        return String(format: "%.2f s", s)
    }
}

extension BenchContext {
    /// Adds a byte-throughput row: `bytes` processed per call, compared with a read bandwidth
    /// measured right now over the same number of bytes with the same threads.
    func addThroughput(group: String, name: String, threads: Int, bytes: Int, timing: Timing, note: String? = nil) {
        let gbps = Double(bytes) / timing.min / 1e9
        let read = readBandwidth(bytes: bytes, threads: threads) / 1e9
        report.add(BenchRow(group: group, name: name, threads: threads, value: gbps, unit: "GB/s",
                            minSeconds: timing.min, medianSeconds: timing.median, readGBps: read,
                            ratio: gbps / read, note: note), json: options.json)
    }

    /// Adds a row with any unit (no bandwidth comparison).
    func addValue(group: String, name: String, threads: Int, value: Double, unit: String, timing: Timing,
                  note: String? = nil) {
        report.add(BenchRow(group: group, name: name, threads: threads, value: value, unit: unit,
                            minSeconds: timing.min, medianSeconds: timing.median, readGBps: nil, ratio: nil,
                            note: note), json: options.json)
    }
}
