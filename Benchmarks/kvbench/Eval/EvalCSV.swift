import Foundation

/// `results.csv`: one row per cell with every field of ``EvalCell`` (named as in `results.json`),
/// then the run's commit, date, machine, mode and model on every row, so that rows from several
/// runs can be concatenated and still say where they came from.
///
/// The format is RFC 4180: a header row, CRLF line ends, and a field quoted (with quotes doubled)
/// when it holds a comma, a quote, a line break or leading or trailing spaces. A missing value is
/// an empty field; `layerErrors` is one field with the per-layer values separated by `;`; numbers
/// print in Swift's shortest exact form (`0.1`, `1e-05`); booleans as `true`/`false`.
enum EvalCSV {
    /// The cell's columns in the order of ``EvalCell``'s fields, with how each prints.
    private static let cellColumns: [(name: String, value: @Sendable (EvalCell) -> String)] = [
        ("key", { $0.key }),
        ("task", { $0.task }),
        ("policy", { $0.policy }),
        ("budget", { $0.budget }),
        ("budgetBytes", { int($0.budgetBytes) }),
        ("context", { int($0.context) }),
        ("tokens", { int($0.tokens) }),
        ("depth", { double($0.depth) }),
        ("seed", { int($0.seed) }),
        ("correct", { int($0.correct) }),
        ("answer", { $0.answer ?? "" }),
        ("expected", { $0.expected ?? "" }),
        ("perplexity", { double($0.perplexity) }),
        ("scoredTokens", { int($0.scoredTokens) }),
        ("stoppedAtContextLength", { $0.stoppedAtContextLength.map { $0 ? "true" : "false" } ?? "" }),
        ("layerErrors", { $0.layerErrors.map { $0.map { double($0) }.joined(separator: ";") } ?? "" }),
        ("cacheBytes", { int($0.cacheBytes) }),
        ("peakCacheBytes", { int($0.peakCacheBytes) }),
        ("prefillTokensPerSecond", { double($0.prefillTokensPerSecond) }),
        ("decodeTokensPerSecond", { double($0.decodeTokensPerSecond) }),
        ("peakRSSBytes", { int($0.peakRSSBytes) }),
        ("seconds", { double($0.seconds) }),
    ]

    /// The run's columns, repeated on every row.
    private static let runColumns: [(name: String, value: @Sendable (EvalRun) -> String)] = [
        ("commit", { $0.commit }),
        ("date", { $0.date }),
        ("cpu", { $0.machine.cpu }),
        ("cores", { int($0.machine.cores) }),
        ("isa", { $0.machine.isa }),
        ("os", { $0.machine.os }),
        ("threads", { int($0.machine.threads) }),
        ("mode", { $0.settings.mode }),
        ("model", { $0.settings.model }),
    ]

    /// The whole file for `run`: the header and one row per cell, in run order.
    ///
    /// A field that ``EvalCell`` gains later and this list does not name yet is still written:
    /// it is found by reflection and appended after the listed cell columns (printed generically).
    static func csv(_ run: EvalRun) -> String {
        let listed = Set(cellColumns.map(\.name))
        let extra: [String] = run.cells.first.map { cell in
            Mirror(reflecting: cell).children.compactMap(\.label).filter { !listed.contains($0) }
        } ?? []
        let header = cellColumns.map(\.name) + extra + runColumns.map(\.name)
        var out = header.map(field).joined(separator: ",") + "\r\n"
        let runValues = runColumns.map { $0.value(run) }
        for cell in run.cells {
            var values = cellColumns.map { $0.value(cell) }
            if !extra.isEmpty {
                var reflected: [String: String] = [:]
                for child in Mirror(reflecting: cell).children {
                    if let label = child.label { reflected[label] = generic(child.value) }
                }
                values += extra.map { reflected[$0] ?? "" }
            }
            values += runValues
            out += values.map(field).joined(separator: ",") + "\r\n"
        }
        return out
    }

    /// `text` as one RFC 4180 field: quoted, with quotes doubled, when it holds a comma, a quote,
    /// CR or LF, or starts or ends with a space; as is otherwise.
    static func field(_ text: String) -> String {
        let needsQuotes = text.contains { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
            || text.hasPrefix(" ") || text.hasSuffix(" ")
        guard needsQuotes else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// An optional integer as a field: its digits, or empty.
    private static func int(_ value: Int?) -> String {
        value.map { String($0) } ?? ""
    }

    /// An optional number as a field: Swift's shortest exact form, or empty.
    private static func double(_ value: Double?) -> String {
        value.map { "\($0)" } ?? ""
    }

    /// Any reflected value: optionals unwrapped (nil is empty), arrays joined with `;`.
    private static func generic(_ value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .optional:
            return mirror.children.first.map { generic($0.value) } ?? ""
        case .collection, .set:
            return mirror.children.map { generic($0.value) }.joined(separator: ";")
        default:
            return "\(value)"
        }
    }
}
