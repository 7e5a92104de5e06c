import Foundation

/// How the report and the plots print values: bytes in decimal units (as the rest of kvbench),
/// contexts as `1K`, depths and accuracies in percent, and labels made safe for file names.
enum EvalFormat {
    /// The mark for a measurement the run does not hold.
    static let missing = "—"

    /// `bytes` as `812 B`, `12.4 KB`, `3.15 MB` or `1.20 GB` (powers of 1000), three significant
    /// digits; `trimmed` drops trailing zeros (`5 MB` rather than `5.00 MB`, for axis ticks).
    static func bytes(_ bytes: Double, trimmed: Bool = false) -> String {
        guard bytes.isFinite else { return missing }
        let units: [(Double, String)] = [(1e9, "GB"), (1e6, "MB"), (1e3, "KB")]
        for (scale, unit) in units where abs(bytes) >= scale * (1 - 1e-9) {
            var s = significant(bytes / scale)
            if trimmed && s.contains(".") {
                while s.hasSuffix("0") { s.removeLast() }
                if s.hasSuffix(".") { s.removeLast() }
            }
            return s + " " + unit
        }
        return String(Int(bytes.rounded())) + " B"
    }

    /// A context length in tokens: `512`, `1K`, `1.5K`, `32K`, `1M` (powers of 1024 when exact,
    /// else of 1000).
    static func context(_ tokens: Int) -> String {
        if tokens >= 1 << 20 && tokens % (1 << 20) == 0 { return "\(tokens >> 20)M" }
        if tokens >= 1024 && tokens % 1024 == 0 { return "\(tokens / 1024)K" }
        if tokens >= 1024 && tokens % 512 == 0 { return "\(Double(tokens) / 1024)K" }
        return String(tokens)
    }

    /// A depth in `0...1` as a percentage of the prompt: `0 %`, `25 %`, `100 %`.
    static func depth(_ depth: Double) -> String {
        percent(100 * depth, decimals: depth * 100 == (depth * 100).rounded() ? 0 : 1)
    }

    /// `value` in percent with `decimals` decimals: `95.0 %`.
    static func percent(_ value: Double, decimals: Int = 1) -> String {
        guard value.isFinite else { return missing }
        return String(format: "%.\(decimals)f %%", value)
    }

    /// An accuracy as `95.0 % (38/40)`, or "—" without trials.
    static func accuracy(_ a: EvalDigest.Accuracy) -> String {
        guard let p = a.percent else { return missing }
        return "\(percent(p)) (\(a.correct)/\(a.trials))"
    }

    /// A difference in percentage points with its sign: `+2.5 pp`, `-10.0 pp`, `0.0 pp`.
    static func points(_ value: Double) -> String {
        guard value.isFinite else { return missing }
        let rounded = (value * 10).rounded() / 10
        return rounded == 0 ? "0.0 pp" : String(format: "%+.1f pp", rounded)
    }

    /// `value` with three significant digits (`0.0123`, `1.23`, `12.3`, `123`, `1234`).
    static func significant(_ value: Double, digits: Int = 3) -> String {
        guard value.isFinite else { return missing }
        guard value != 0 else { return "0" }
        let magnitude = Int(log10(abs(value)).rounded(.down))
        let decimals = max(0, digits - 1 - magnitude)
        return String(format: "%.\(decimals)f", value)
    }

    /// A rate such as tokens per second: one decimal below 100, none above.
    static func rate(_ value: Double) -> String {
        guard value.isFinite else { return missing }
        return abs(value) < 100 ? String(format: "%.1f", value) : String(format: "%.0f", value)
    }

    /// `label` as a file-name component: `%` becomes `pct`, letters, digits, `.` and `-` stay,
    /// anything else becomes `-` (runs collapsed, none at the ends); never empty.
    static func fileComponent(_ label: String) -> String {
        var out = ""
        for scalar in label.unicodeScalars {
            if scalar == "%" {
                out += "pct"
            } else if scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || scalar == "." || scalar == "-") {
                out.unicodeScalars.append(scalar)
            } else if !out.hasSuffix("-") {
                out += "-"
            }
        }
        while out.hasPrefix("-") || out.hasPrefix(".") { out.removeFirst() }
        while out.hasSuffix("-") || out.hasSuffix(".") { out.removeLast() }
        return out.isEmpty ? "x" : out
    }

    /// `text` safe inside a Markdown table cell: pipes and backslashes escaped, `<` and `>` as
    /// entities (no accidental HTML), line breaks as spaces.
    static func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "|", with: "\\|")
            .replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\r\n", with: " ")
            .replacingOccurrences(of: "\n", with: " ")
            .replacingOccurrences(of: "\r", with: " ")
    }

    /// A task's name for headings and column titles.
    static func taskTitle(_ task: String) -> String {
        switch task {
        case "passkey": return "Passkey"
        case "needle": return "Needle"
        case "perplexity": return "Perplexity"
        case "attention-error": return "Attention error"
        default: return task.prefix(1).uppercased() + task.dropFirst()
        }
    }
}
