import Foundation
import KVCompress
import KVCore

extension LlamaSession {
    /// Processes prompt tokens in chunks of ``chunkSize`` (the policy compresses after the last
    /// one) and returns the logits of the last one.
    /// - Throws: `KVError.emptyPrompt` for no tokens; `.invalidParameter` for an id outside the
    ///   vocabulary (nothing processed); `.capacityExceeded` when a chunk's positions would reach
    ///   the model's context length (the chunks before it stay in the cache); `.cancelled` when the
    ///   surrounding task is cancelled; `.invalidState` after an interrupted step (call ``reset()``).
    public func prefill(_ tokens: [Int32]) throws(KVError) -> [Float] {
        guard !tokens.isEmpty else { throw .emptyPrompt }
        let vocab = model.config.vocab
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw .invalidParameter(name: "token id", value: "\(bad)", expected: "0..<\(vocab) (the model's vocabulary)")
        }
        var logits: [Float] = []
        try prefillChunks(tokens) { (chunk: Range<Int>) throws(KVError) in
            if chunk.upperBound == tokens.count { logits = lastLogits(tokenCount: chunk.count) }
        }
        return logits
    }

    /// Feeds `tokens` through the model as one prompt in chunks of ``chunkSize`` (the last chunk
    /// ends the prompt), calling `afterChunk` with each chunk's token range while the scratch
    /// buffers still hold that chunk's activations, then runs the replays the policy asks for
    /// (``runReplays(prompt:)``). Ids are not checked here.
    func prefillChunks(_ tokens: [Int32], afterChunk: (Range<Int>) throws(KVError) -> Void) throws(KVError) {
        try tokens.withUnsafeBufferPointer { (all: UnsafeBufferPointer<Int32>) throws(KVError) in
            var start = 0
            while start < all.count {
                let end = min(all.count, start + chunkSize)
                try forward(UnsafeBufferPointer(rebasing: all[start..<end]), decode: false, endsPrompt: end == all.count)
                try afterChunk(start..<end)
                start = end
            }
        }
        try runReplays(prompt: tokens)
    }

    /// Runs one token and returns its logits.
    /// - Throws: as ``prefill(_:)``.
    public func decode(_ token: Int32) throws(KVError) -> [Float] {
        let start = stepProfile == nil ? 0 : DispatchTime.now().uptimeNanoseconds
        try [token].withUnsafeBufferPointer { (one: UnsafeBufferPointer<Int32>) throws(KVError) in
            try forward(one, decode: true, endsPrompt: false)
        }
        guard stepProfile != nil else { return lastLogits(tokenCount: 1) }
        let forwardEnd = DispatchTime.now().uptimeNanoseconds
        let logits = lastLogits(tokenCount: 1)
        let end = DispatchTime.now().uptimeNanoseconds
        stepProfile?.add(.logits, seconds: Double(end - forwardEnd) * 1e-9, bytes: model.output.byteCount)
        stepProfile?.addStep(seconds: Double(end - start) * 1e-9)
        return logits
    }

    /// Generates a continuation of `prompt`, streaming decoded text pieces to `onText` as soon as
    /// they form complete UTF-8.
    /// - Parameters:
    ///   - maxTokens: upper bound on generated tokens (>= 1).
    ///   - stopTokens: ids that end generation (default: the tokenizer's EOS).
    /// - Returns: the generated tokens and text; generation that reaches the model's context length
    ///   stops there with ``GenerationResult/StopReason/contextFull`` and keeps what it generated.
    /// - Throws: as ``prefill(_:)`` for the prompt (a prompt that does not fit is an error);
    ///   `.invalidParameter` for `maxTokens < 1`.
    public func generate(prompt: String, maxTokens: Int, sampling: SamplingParameters = .greedy,
                         stopTokens: Set<Int32>? = nil,
                         onText: (String) -> Void = { _ in }) throws(KVError) -> GenerationResult {
        let ids = try model.tokenizer.encode(prompt)
        return try generate(promptTokens: ids, maxTokens: maxTokens, sampling: sampling,
                            stopTokens: stopTokens, onText: onText)
    }

    /// Generates a continuation of already tokenized input; see ``generate(prompt:maxTokens:sampling:stopTokens:onText:)``.
    public func generate(promptTokens: [Int32], maxTokens: Int, sampling: SamplingParameters = .greedy,
                         stopTokens: Set<Int32>? = nil,
                         onText: (String) -> Void = { _ in }) throws(KVError) -> GenerationResult {
        guard maxTokens >= 1 else {
            throw .invalidParameter(name: "maxTokens", value: "\(maxTokens)", expected: ">= 1")
        }
        let stops = stopTokens ?? Set([model.tokenizer.eosTokenID])
        var sampler = Sampler(sampling)
        var decoder = model.tokenizer.makeStreamingDecoder()
        cache.resetPeakByteCount()
        let clock = ContinuousClock()
        let t0 = clock.now
        var logits = try prefill(promptTokens)
        let prefillTime = clock.now - t0
        var generated: [Int32] = []
        var text = ""
        var steps = 0
        var reason = GenerationResult.StopReason.maxTokens
        let t1 = clock.now
        while true {
            let next = logits.withUnsafeBufferPointer { sampler.sample($0) }
            if stops.contains(next) { reason = .stopToken; break }
            generated.append(next)
            let piece = decoder.append(next)
            if !piece.isEmpty { text += piece; onText(piece) }
            if generated.count == maxTokens { break }
            do {
                logits = try decode(next)
            } catch .capacityExceeded {
                reason = .contextFull
                break
            }
            steps += 1
        }
        let decodeTime = clock.now - t1
        let tail = decoder.finish()
        if !tail.isEmpty { text += tail; onText(tail) }
        return GenerationResult(tokens: generated, text: text, stopReason: reason,
                                promptTokens: promptTokens.count, prefillSeconds: prefillTime.seconds,
                                decodeSteps: steps, decodeSeconds: decodeTime.seconds,
                                cacheBytes: cache.byteCount, peakCacheBytes: cache.peakByteCount)
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
