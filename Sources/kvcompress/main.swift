import Foundation
import KVCompress
import KVModel

/// Entry point: `kvcompress <subcommand> [options]`. Exit codes: 0 success, 1 runtime error (a model
/// or file that cannot be read, a failure while computing), 2 bad arguments (the message names the
/// flag).
let usage = """
    kvcompress: KV-cache compression tools on a GGUF Llama model

    USAGE:
      kvcompress generate --prompt TEXT [options]     stream a continuation
      kvcompress perplexity --text FILE [options]     teacher-forced perplexity of a text
      kvcompress kept --policy NAME --ratio R ...     kvpress parity: the kept positions
      kvcompress kept --policy list                   the policies
      kvcompress calibrate METHOD --out PATH ...      a model's head pattern or statistics (duo, razor,
                                                      qfilter, expected-attention)
      kvcompress SUBCOMMAND --help                    a subcommand's options

    Exit codes: 0 success, 1 runtime error, 2 bad arguments.
    """

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("kvcompress: \(message)\n".utf8))
    exit(code)
}

/// Library parameter names as the command line spells them.
let flagNames = ["compressionRatio": "--ratio", "maxTokens": "--max-tokens", "chunkSize": "--chunk",
                 "temperature": "--temperature", "top-k": "--top-k", "top-p": "--top-p", "window": "--window",
                 "sinks": "--sinks", "policy": "--policy"]

let args = CommandLine.arguments.dropFirst()
guard let command = args.first else {
    print(usage)
    exit(2)
}
if ["--help", "-h", "help"].contains(command) {
    print(usage)
    exit(0)
}
let subcommands: [String: (ArraySlice<String>) throws -> Void] = [
    "generate": GenerateCommand.run, "perplexity": PerplexityCommand.run, "kept": KeptCommand.run,
    "calibrate": CalibrateCommand.run,
]
guard let run = subcommands[command] else {
    fail("unknown subcommand '\(command)'\n\n\(usage)", code: 2)
}
do {
    try run(args.dropFirst())
} catch let error as CommandLineOptions.UsageError {
    fail("\(error.description)\nrun 'kvcompress \(command) --help' for usage", code: 2)
} catch let error as KVError {
    switch error {
    case let .invalidParameter(name, value, expected):
        fail("invalid \(flagNames[name] ?? name) = \(value): expected \(expected)", code: 2)
    case .emptyPrompt:
        fail(error.description, code: 2)
    default:
        fail(error.description, code: 1)
    }
} catch {
    fail("\(error)", code: 1)
}
