/// Minimal `--flag value` parser shared by the subcommands: every option is known up front, so an
/// unknown flag or a missing value is reported with the subcommand's usage.
struct CommandLineOptions {
    struct UsageError: Error, CustomStringConvertible {
        let description: String
    }

    private var values: [String: String] = [:]
    private var flags: Set<String> = []

    /// Parses `arguments` given the options that take a value and the boolean flags.
    init(_ arguments: ArraySlice<String>, valued: Set<String>, boolean: Set<String>) throws(UsageError) {
        var it = arguments.makeIterator()
        while let arg = it.next() {
            if valued.contains(arg) {
                guard let v = it.next() else { throw UsageError(description: "\(arg) needs a value") }
                values[arg] = v
            } else if boolean.contains(arg) {
                flags.insert(arg)
            } else {
                throw UsageError(description: "unknown argument '\(arg)'")
            }
        }
    }

    func string(_ name: String) -> String? { values[name] }

    func has(_ flag: String) -> Bool { flags.contains(flag) }

    func int(_ name: String, default value: Int) throws(UsageError) -> Int {
        guard let s = values[name] else { return value }
        guard let v = Int(s) else { throw UsageError(description: "\(name) expects an integer, got '\(s)'") }
        return v
    }

    func double(_ name: String, default value: Double) throws(UsageError) -> Double {
        guard let s = values[name] else { return value }
        guard let v = Double(s), v.isFinite else {
            throw UsageError(description: "\(name) expects a number, got '\(s)'")
        }
        return v
    }
}
