import KVCompress
import KVCore

extension LlamaSession {
    /// Runs the replays the session's policy asked for after the prompt `prompt` just ended
    /// (`KVCompressor.pendingReplays`: KVzip's context reconstruction, KVCompose's replay), each in
    /// chunks of ``chunkSize``; the compressor removes their entries when each ends and then runs
    /// the policy's cross-layer hook. A replay with gradients (KVgrad's) is recorded and
    /// backpropagated (``backpropagateReplay(_:)``). Overwrites the scratch buffers (read a prompt's
    /// logits first).
    /// - Throws: `KVError.invalidParameter` for a replay segment outside the prompt or a replay
    ///   without tokens; whatever the forward pass and the policy throw.
    func runReplays(prompt: [Int32]) throws(KVError) {
        while let replay = compressor.pendingReplays.first {
            if let artifact = replay.restore {
                try check(artifact)
                var start = 0
                repeat {
                    let end = min(artifact.tokenCount, start + chunkSize)
                    try forward(restoring: artifact, rows: start..<end, endsReplay: end == artifact.tokenCount)
                    start = end
                } while start < artifact.tokenCount
                continue
            }
            let ids = try replayTokens(replay, prompt: prompt)
            guard !ids.isEmpty else {
                throw .invalidParameter(name: "replay", value: "no tokens", expected: "a replay with at least one token")
            }
            replayTape = replay.gradients ? ReplayTape(layers: model.config.layers) : nil
            defer { replayTape = nil }
            try ids.withUnsafeBufferPointer { (all: UnsafeBufferPointer<Int32>) throws(KVError) in
                var start = 0
                repeat {
                    let end = min(all.count, start + chunkSize)
                    try forward(UnsafeBufferPointer(rebasing: all[start..<end]), decode: false, endsPrompt: end == all.count,
                                replay: true)
                    start = end
                } while start < all.count
            }
            if let replayTape { try backpropagateReplay(replayTape) }
        }
    }

    /// Checks that a RestoreKV artifact fits the model.
    /// - Throws: `KVError.shapeMismatch` naming what differs.
    private func check(_ artifact: RestoreKVArtifact) throws(KVError) {
        let c = model.config
        guard artifact.width == c.hidden, artifact.adapters.count <= c.layers else {
            throw .shapeMismatch("the RestoreKV artifact has \(artifact.width)-wide embeddings and adapts \(artifact.adapters.count) layers; "
                + "the model has hidden size \(c.hidden) and \(c.layers) layers (load the artifact for this model)")
        }
        for layer in artifact.adapters {
            for (module, lowRank) in layer {
                let (inputs, outputs): (Int, Int) = switch module {
                case .q, .o: (c.hidden, c.hidden)
                case .k, .v: (c.hidden, c.kvHeads * c.headDim)
                case .gate, .up: (c.hidden, c.ffn)
                case .down: (c.ffn, c.hidden)
                }
                guard lowRank.inputs == inputs, lowRank.outputs == outputs else {
                    throw .shapeMismatch("the RestoreKV adapter's \(module.rawValue) maps \(lowRank.inputs) to \(lowRank.outputs) floats; "
                        + "the model's maps \(inputs) to \(outputs) (load the artifact for this model)")
                }
            }
        }
    }

    /// The ids of a replay's segments: plain text without a beginning-of-sequence token, the chat
    /// template's turn change (ChatML's `<|im_end|>\n<|im_start|>assistant\n` when the vocabulary has
    /// its tokens, else a newline: what kvpress's KVzip uses), the prompt's own ids.
    func replayTokens(_ replay: KVReplay, prompt: [Int32]) throws(KVError) -> [Int32] {
        let tokenizer = model.tokenizer
        func plain(_ text: String, special: Bool) throws(KVError) -> [Int32] {
            let ids = try tokenizer.encode(text, parseSpecial: special)
            return tokenizer.addsBOS ? Array(ids.dropFirst()) : ids
        }
        var ids: [Int32] = []
        for segment in replay.segments {
            switch segment {
            case .text(let text):
                ids += try plain(text, special: false)
            case .assistantTurn:
                let chatML = tokenizer.tokens.contains("<|im_start|>") && tokenizer.tokens.contains("<|im_end|>")
                ids += try plain(chatML ? "<|im_end|>\n<|im_start|>assistant\n" : "\n", special: true)
            case .prompt(let range):
                guard range.lowerBound >= 0 && range.upperBound <= prompt.count else {
                    throw .invalidParameter(name: "replay segment", value: "prompt tokens \(range)",
                                            expected: "a range within the prompt's \(prompt.count) tokens")
                }
                ids += prompt[range]
            }
        }
        return ids
    }
}
