// kvbench: kernel, model and policy benchmarks for KVCompress.
//
// Usage: kvbench <group> [--json] [--threads 1,2] [--quick]; `kvbench --help` lists the groups.
// Each group lives in its own file and registers itself with one line in `BenchGroup.all`.
import Foundation

let exitCode = BenchCommandLine.run(arguments: Array(CommandLine.arguments.dropFirst()))
exit(exitCode)
