/// A `--flag value` / `--flag=value` parser shared by the subcommands: every option is known up
/// front, so an unknown flag or a missing value is a usage error (exit 2) that names the flag.
struct CommandLineOptions {
    /// A usage error: the message names the flag and says what was expected.
    struct UsageError: Error, CustomStringConvertible {
        let description: String
    }

    private var values: [String: String] = [:]
    private var flags: Set<String> = []
    /// Whether `--help` or `-h` was given.
    private(set) var wantsHelp = false

    /// Parses `arguments` given the options that take a value and the boolean flags.
    init(_ arguments: ArraySlice<String>, valued: Set<String>, boolean: Set<String>) throws(UsageError) {
        var it = arguments.makeIterator()
        while let arg = it.next() {
            if arg == "--help" || arg == "-h" { wantsHelp = true; continue }
            var name = arg
            var inline: String?
            if let eq = arg.firstIndex(of: "="), arg.hasPrefix("--") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            if valued.contains(name) {
                guard let v = inline ?? it.next() else { throw UsageError(description: "\(name) needs a value") }
                guard values[name] == nil else { throw UsageError(description: "\(name) is given twice") }
                values[name] = v
            } else if boolean.contains(name) && inline == nil {
                flags.insert(name)
            } else {
                throw UsageError(description: "unknown argument '\(arg)'")
            }
        }
    }

    /// The value of `name`, if given.
    func string(_ name: String) -> String? { values[name] }

    /// Whether the boolean flag `name` was given.
    func has(_ flag: String) -> Bool { flags.contains(flag) }

    /// An integer option within `range` (inclusive bounds), or `value` when absent.
    func int(_ name: String, default value: Int, in range: ClosedRange<Int> = Int.min...Int.max,
             expected: String? = nil) throws(UsageError) -> Int {
        guard let s = values[name] else { return value }
        guard let v = Int(s), range.contains(v) else {
            throw UsageError(description: "\(name) expects \(expected ?? Self.describe(range)), got '\(s)'")
        }
        return v
    }

    /// A finite number option accepted by `isValid`, or `value` when absent.
    func double(_ name: String, default value: Double, expected: String,
                where isValid: (Double) -> Bool = { _ in true }) throws(UsageError) -> Double {
        guard let s = values[name] else { return value }
        guard let v = Double(s), v.isFinite, isValid(v) else {
            throw UsageError(description: "\(name) expects \(expected), got '\(s)'")
        }
        return v
    }

    /// An unsigned 64-bit option (a seed), or `value` when absent.
    func uint64(_ name: String, default value: UInt64) throws(UsageError) -> UInt64 {
        guard let s = values[name] else { return value }
        guard let v = UInt64(s) else {
            throw UsageError(description: "\(name) expects an integer in 0...\(UInt64.max), got '\(s)'")
        }
        return v
    }

    private static func describe(_ range: ClosedRange<Int>) -> String {
        if range.upperBound == Int.max { return "an integer >= \(range.lowerBound)" }
        return "an integer in \(range.lowerBound)...\(range.upperBound)"
    }
}
