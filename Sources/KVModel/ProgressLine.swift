import Foundation

/// Progress of a long run on stderr, for command-line tools: one line with rate and ETA rewritten in
/// place when stderr is a terminal, otherwise a plain line each time another tenth of the work is
/// done (so logs stay short).
public struct ProgressLine {
    /// What the line starts with.
    public let label: String
    private let isTerminal = isatty(2) != 0
    private let start = ContinuousClock.now
    private var lastTenth = 0
    /// Units done before this line started (not counted in its rate).
    public let alreadyDone: Int

    /// A progress line starting with `label`; `alreadyDone` units were done before (a resumed run),
    /// so the rate and ETA count only the units done from now on.
    public init(label: String, alreadyDone: Int = 0) {
        self.label = label
        self.alreadyDone = alreadyDone
    }

    /// Reports `done` of `total` units (`unit` names them, e.g. "tok" or "cells").
    public mutating func update(done: Int, total: Int, unit: String) {
        let elapsed = (ContinuousClock.now - start).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18
        let rate = Double(max(done - alreadyDone, 0)) / max(seconds, 1e-9)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let line = String(format: "%@ %d/%d %@ (%.0f%%), %.0f %@/s, ETA %d:%02d", label, done, total, unit,
                          100 * Double(done) / Double(max(total, 1)), rate, unit, Int(eta) / 60, Int(eta) % 60)
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            if done >= total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else {
            let tenth = done * 10 / max(total, 1)
            if tenth > lastTenth || done >= total {
                lastTenth = tenth
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }
    }
}
