import CKVKernels
import Dispatch
import Foundation
import KVCore

/// What a group gets: the options, a report to add rows to, and measurement helpers.
final class BenchContext: @unchecked Sendable {
    let options: BenchOptions
    let report = BenchReport()
    private var pools: [Int: ThreadPool] = [:]
    /// Read bandwidths measured so far, by thread count (`readBandwidth(threads:)`).
    var bandwidths: [Int: Double] = [:]

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
        let inner = calibrate(body)
        for _ in 0..<2 { _ = time(inner, body) } // warm-up
        return Timing(samples: (0..<repetitions).map { _ in seconds(inner, body) })
    }

    /// Times `body` and `other` in alternating samples (each calibrated as in `measure`), so that a
    /// slow spell on a shared machine hits both alike: a ratio of the two is then stable where two
    /// measurements one after the other can drift apart by tens of percent. Each sample starts with
    /// one untimed call, so that neither is timed on data the other just pushed out of the caches.
    func measure(_ body: () -> Void, alternatingWith other: () -> Void) -> (Timing, Timing) {
        let a = calibrate(body), b = calibrate(other)
        for _ in 0..<2 { _ = time(a, body); _ = time(b, other) } // warm-up
        var first: [Double] = [], second: [Double] = []
        for _ in 0..<repetitions {
            body()
            first.append(seconds(a, body))
            other()
            second.append(seconds(b, other))
        }
        return (Timing(samples: first), Timing(samples: second))
    }

    /// Inner repeat count for ~2 ms (0.5 ms with --quick) per sample.
    private func calibrate(_ body: () -> Void) -> Int {
        let target: UInt64 = options.quick ? 500_000 : 2_000_000
        var inner = 1
        while true {
            let t = time(inner, body)
            if t >= target || inner >= 1 << 20 { return inner }
            inner = t == 0 ? inner * 16 : min(inner * 16, max(inner * 2, Int(Double(inner) * Double(target) / Double(t)) + 1))
        }
    }

    private func seconds(_ inner: Int, _ body: () -> Void) -> Double {
        Double(time(inner, body)) / 1e9 / Double(inner)
    }

    private func time(_ inner: Int, _ body: () -> Void) -> UInt64 {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<inner { body() }
        return DispatchTime.now().uptimeNanoseconds - start
    }

    /// The core clock in GHz, estimated from a chain of dependent 64-bit multiplies (3 cycles each
    /// on current x86-64 and Apple cores) timed over ~10 ms. Shared machines change it from run to
    /// run, and compute-bound kernels follow it while memory reads do not.
    static func estimatedClockGHz() -> Double {
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        let iterations = 4_000_000
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { // 4 squarings per iteration, each waiting for the last (x stays odd)
            x = x &* x
            x = x &* x
            x = x &* x
            x = x &* x
        }
        let ns = Double(DispatchTime.now().uptimeNanoseconds - start)
        guard x != 0 else { return 0 } // never taken (x is odd); keeps the chain from being optimized away
        return Double(iterations * 4 * 3) / ns
    }

    /// Measures `body`, which reads `bytes` bytes per call, in alternation with the read reference
    /// (kvk_sum_f32 over a buffer of the same byte size, split over the same threads) and adds the
    /// row: GB/s of `bytes` at the fastest sample, the reference's GB/s, and their ratio. `verdict`,
    /// given the GB/s and the ratio, may add to the note (e.g. whether a target was met).
    func addThroughput(group: String, name: String, threads: Int, bytes: Int, note: String? = nil,
                       verdict: ((_ gbps: Double, _ ratio: Double) -> String?)? = nil, _ body: () -> Void) {
        let reference = ReadReference(bytes: bytes, pool: pool(threads))
        let (timing, readTiming) = measure(body, alternatingWith: reference.run)
        let gbps = Double(bytes) / timing.min / 1e9
        let read = Double(reference.bytes) / readTiming.min / 1e9
        let notes = [note, verdict?(gbps, gbps / read)].compactMap { $0 }
        report.add(BenchRow(group: group, name: name, threads: threads, value: gbps, unit: "GB/s",
                            minSeconds: timing.min, medianSeconds: timing.median, readGBps: read,
                            ratio: gbps / read, note: notes.isEmpty ? nil : notes.joined(separator: "; ")),
                   json: options.json)
    }

    /// "target <what>: met" or "...: MISSED", for the notes of rows that the project sets a target for.
    static func target(_ what: String, met: Bool) -> String {
        "target \(what): \(met ? "met" : "MISSED")"
    }
}

/// Per-call seconds of a measurement.
struct Timing: Sendable {
    var min: Double
    var median: Double
}

extension Timing {
    /// The minimum and median of per-call seconds.
    init(samples: [Double]) {
        let sorted = samples.sorted()
        self.init(min: sorted[0], median: sorted[sorted.count / 2])
    }
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
        // median over 1.2 x minimum: the samples were disturbed (a neighbour or the OS had the core)
        let spread = row.minSeconds > 0 ? row.medianSeconds / row.minSeconds - 1 : 0
        let noisy = spread > 0.2 ? String(format: "  [noisy: median +%.0f %%]", spread * 100) : ""
        print(pad("\(row.group)/\(row.name)", 44) + pad("\(row.threads)", 4) + pad(value, 16)
              + pad(formatSeconds(row.minSeconds), 11) + pad(formatSeconds(row.medianSeconds), 11) + pad(read, 10) + ratio
              + (row.note.map { "  (\($0))" } ?? "") + noisy)
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
    /// Adds a row with any unit (no bandwidth comparison).
    func addValue(group: String, name: String, threads: Int, value: Double, unit: String, timing: Timing,
                  note: String? = nil) {
        report.add(BenchRow(group: group, name: name, threads: threads, value: value, unit: unit,
                            minSeconds: timing.min, medianSeconds: timing.median, readGBps: nil, ratio: nil,
                            note: note), json: options.json)
    }
}
