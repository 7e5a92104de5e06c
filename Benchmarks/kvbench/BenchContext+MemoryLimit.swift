import Foundation
import KVCore

/// Decode rows against the memory limit: a decode step reads every weight once plus the whole
/// cache, so bytes per step over the machine's read bandwidth bound its speed.
extension BenchContext {
    /// Bytes of the read-bandwidth reference: far beyond every CPU cache.
    static let bandwidthBytes = 512 << 20

    /// Read bandwidth in GB/s with `threads` threads: the best of 5 sums (kvk_sum_f32) over a
    /// 512 MiB buffer split into chunks over the pool (64 MiB with --quick), measured once per
    /// thread count in a run.
    func readBandwidth(threads: Int) -> Double {
        if let known = bandwidths[threads] { return known }
        let reference = ReadReference(bytes: options.quick ? Self.bandwidthBytes / 8 : Self.bandwidthBytes, pool: pool(threads))
        let clock = ContinuousClock()
        var best = Double.infinity
        for _ in 0..<5 {
            let t = clock.now
            reference.run()
            best = min(best, (clock.now - t).benchSeconds)
        }
        let gbps = Double(reference.bytes) / best / 1e9
        bandwidths[threads] = gbps
        return gbps
    }

    /// Adds a decode row: tok/s (median step), and against the memory limit: the bytes a step must
    /// read (`weightBytes` + `cacheBytes`), the same-run read bandwidth for `threads` threads (the
    /// row's "read GB/s"), and the row's fraction of the limit (its "ratio": bytes per step times
    /// tok/s over that bandwidth). `note` is appended.
    func addDecode(group: String, name: String, threads: Int, timing: Timing, weightBytes: Int, cacheBytes: Int,
                   note: String? = nil) {
        let rate = 1 / timing.median
        let stepBytes = weightBytes + cacheBytes
        let read = readBandwidth(threads: threads)
        let limit = read * 1e9 / Double(stepBytes)
        let memory = String(format: "step reads %.1f MB (weights %.1f + cache %.1f), limit %.0f tok/s at the read GB/s",
                            Double(stepBytes) / 1e6, Double(weightBytes) / 1e6, Double(cacheBytes) / 1e6, limit)
        report.add(BenchRow(group: group, name: name, threads: threads, value: rate, unit: "tok/s",
                            minSeconds: timing.min, medianSeconds: timing.median, readGBps: read, ratio: rate / limit,
                            note: [memory, note].compactMap { $0 }.joined(separator: "; ")), json: options.json)
    }
}
