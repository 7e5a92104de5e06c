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
