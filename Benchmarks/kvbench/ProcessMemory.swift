import Foundation

/// Resident memory of this process, from /proc/self/status on Linux (nil elsewhere).
enum ProcessMemory {
    /// Current resident set size in bytes (VmRSS).
    static var current: Int? { field("VmRSS:") }
    /// Peak resident set size in bytes (VmHWM).
    static var peak: Int? { field("VmHWM:") }

    private static func field(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name) {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first
            return kb.map { $0 * 1024 }
        }
        return nil
    }
}
