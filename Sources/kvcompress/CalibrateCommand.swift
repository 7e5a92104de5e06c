import Foundation
import KVCompress
import KVModel

/// `kvcompress calibrate duo|razor|qfilter|expected-attention`: makes a model's head pattern for
/// DuoAttention or RazorAttention, its Q-filters, or its offline Expected Attention statistics.
enum CalibrateCommand {
    static let usage = """
    kvcompress calibrate duo --out DIR [--model PATH|default] [--threads N]
    kvcompress calibrate razor --out FILE [--model PATH|default] [--threads N]
    kvcompress calibrate qfilter --text FILE --out FILE [--tokens N] [--model PATH|default] [--threads N]
    kvcompress calibrate expected-attention --text FILE --out DIR [--samples N] [--characters N]
                                            [--model PATH|default] [--threads N]

    duo:   estimates DuoAttention's gate per (layer, KV head): the distillation loss on the final
           hidden states at the answers of synthetic multi-passkey samples when that head alone
           attends as a streaming head (64 sinks + 256 recent tokens), divided by the largest.
           Writes DIR/full_attention_heads.tsv and DIR/config.json (the reference's format).
           About 4 x 91 prefills of 1000-2500 tokens on the default model.
    razor: RazorAttention's echo and induction scores from one prefill of BOS + 1024 random tokens
           repeated 4 times; retrieval heads are the top 1 % by echo and 14 % by induction score.
           Writes the head list (JSON) to FILE.
    qfilter: QFilter's filters: the first right singular vector of each KV head's post-RoPE queries
           over the first N tokens (default 4096) of the text FILE. Writes them (TSV) to FILE.
    expected-attention: ExpectedAttentionStats' query statistics, as kvpress collects them: the text
           cut into N pieces (default 100) of C characters (default 1000), each prefilled alone; per
           layer and query head the mean and covariance of the pre-RoPE queries of every token but
           each piece's first 4. Writes DIR/model.safetensors and DIR/config.json (kvpress's format).

      --out DIR|FILE    where the pattern goes
      --model PATH|default  a llama GGUF file, or 'default' (SmolLM2-135M-Instruct)
      --threads N       threads (default: all cores)
      --text FILE       qfilter: the calibration text
      --tokens N        qfilter: tokens of the text used (default 4096)
      --samples N       expected-attention: pieces of the text (default 100)
      --characters N    expected-attention: characters per piece (default 1000)
    """

    static func run(_ arguments: ArraySlice<String>) throws {
        let o = try CommandLineOptions(arguments.first == "--help" ? arguments : arguments.dropFirst(), valued: ["--out", "--model", "--threads", "--text", "--tokens",
                                                                                                                                   "--samples", "--characters"], boolean: [])
        if o.wantsHelp || arguments.first == "--help" { print(usage); return }
        guard let kind = arguments.first, ["duo", "razor", "qfilter", "expected-attention"].contains(kind) else {
            throw CommandLineOptions.UsageError(description: "calibrate needs a method: 'duo', 'razor', 'qfilter' or 'expected-attention'")
        }
        var text: String?
        if kind == "qfilter" || kind == "expected-attention" {
            guard let path = o.string("--text") else {
                throw CommandLineOptions.UsageError(description: "calibrate \(kind) needs --text FILE (a calibration text)")
            }
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw KVError.io(path: path, reason: error.localizedDescription)
            }
        }
        let tokens = try o.int("--tokens", default: 4096, in: 64...1_000_000)
        var statistics = ExpectedAttentionCalibration()
        statistics.samples = try o.int("--samples", default: 100, in: 1...1_000_000)
        statistics.sampleCharacters = try o.int("--characters", default: 1000, in: 1...100_000_000)
        let writesDirectory = kind == "duo" || kind == "expected-attention"
        guard let out = o.string("--out") else {
            throw CommandLineOptions.UsageError(description: "calibrate \(kind) needs --out \(writesDirectory ? "DIR" : "FILE")")
        }
        if !writesDirectory { try KeptCommand.checkWritable(out) }
        let threads = try o.int("--threads", default: ThreadPool.shared.threadCount, in: 1...4096)
        let modelPath = o.string("--model") ?? "default"
        let model = try LlamaModel(path: modelPath, mode: .fast)
        let pool = ThreadPool(threads: threads)
        let started = ContinuousClock.now
        if kind == "duo" {
            var line = ProgressLine(label: "calibrate duo")
            let settings = DuoCalibration()
            let pattern = try settings.run(model: model, pool: pool) { line.update(done: $0, total: $1, unit: "prefills") }
            try HeadPatternFiles.writeDuo(pattern, directory: out, extra: [
                "method": "kvcompress calibrate duo: per-head distillation loss with that head streaming, divided by the largest",
                "contexts": settings.contexts.map(String.init).joined(separator: ","),
                "keys": "\(settings.keys)", "words": "\(settings.words)", "seed": "\(settings.seed)",
                "model": modelPath == "default" ? ModelStore.defaultFileName : URL(fileURLWithPath: modelPath).lastPathComponent,
            ])
            let retrieval = pattern.retrievalHeads(sparsity: 0.5).flatMap { $0 }.filter { $0 }.count
            FileHandle.standardError.write(Data(("calibrate duo: \(pattern.gates.count) gates -> \(out) "
                + "(\(retrieval) retrieval heads at sparsity 0.5) in \(started.duration(to: .now))\n").utf8))
        } else if let text, kind == "expected-attention" {
            var line = ProgressLine(label: "calibrate expected-attention")
            let stats = try statistics.run(model: model, text: text, pool: pool) { line.update(done: $0, total: $1, unit: "pieces") }
            try stats.write(directory: out, dtype: "F16", config: [
                "dataset_name": "kvcompress calibrate expected-attention --text \(URL(fileURLWithPath: o.string("--text")!).lastPathComponent)",
                "model_name": modelPath == "default" ? ModelStore.defaultFileName : URL(fileURLWithPath: modelPath).lastPathComponent,
                "num_samples": statistics.samples, "sample_seq_len": statistics.sampleCharacters, "n_sink": statistics.sinks,
            ])
            FileHandle.standardError.write(Data(("calibrate expected-attention: \(stats.layers) x \(stats.heads) query statistics -> "
                + "\(out) in \(started.duration(to: .now))\n").utf8))
        } else if let text {
            var line = ProgressLine(label: "calibrate qfilter")
            var settings = QFilterCalibration()
            settings.tokens = tokens
            let filters = try settings.run(model: model, text: text, pool: pool) { line.update(done: $0, total: $1, unit: "tok") }
            try HeadPatternFiles.writeQFilters(filters, path: out)
            FileHandle.standardError.write(Data(("calibrate qfilter: \(filters.layers) x \(filters.kvHeads) filters -> \(out) "
                + "in \(started.duration(to: .now))\n").utf8))
        } else {
            var line = ProgressLine(label: "calibrate razor")
            let heads = try RazorCalibration().run(model: model, pool: pool) { line.update(done: $0, total: $1, unit: "tok") }
            try HeadPatternFiles.writeRazor(heads, path: out)
            FileHandle.standardError.write(Data(("calibrate razor: \(heads.heads.count) retrieval heads "
                + "(\(heads.heads.map(\.description).joined(separator: " "))) -> \(out) in \(started.duration(to: .now))\n").utf8))
        }
    }
}
