/// A named set of benchmarks (`kvbench <name>`).
struct BenchGroup: Sendable {
    /// Subcommand name.
    let name: String
    /// One line for `--help`.
    let summary: String
    /// Runs the group's benchmarks, adding rows to the context's report.
    let run: @Sendable (BenchContext) -> Void

    /// Every group, in `--help` order. Register a new group with one line here (define it in its
    /// own file as `extension BenchGroup { static let name = BenchGroup(...) }`).
    static let all: [BenchGroup] = [
        .kernels,
        .model,
        .policies,
        .overhead,
        .quant,
        .heads,
    ]
}
