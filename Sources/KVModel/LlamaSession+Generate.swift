import Foundation
import KVCompress
import KVCore

extension LlamaSession {
    /// Processes prompt tokens in chunks of ``chunkSize`` and returns the logits of the last one.
    /// - Throws: `KVError.emptyPrompt` for no tokens, `.capacityExceeded` past the model's context
    ///   length, `.cancelled` when the surrounding task is cancelled.
    public func prefill(_ tokens: [Int32]) throws(KVError) -> [Float] {
        guard !tokens.isEmpty else { throw .emptyPrompt }
        try checkCapacity(adding: tokens.count)
        try tokens.withUnsafeBufferPointer { (all: UnsafeBufferPointer<Int32>) throws(KVError) in
            var start = 0
            while start < all.count {
                let end = min(all.count, start + chunkSize)
                let chunk = UnsafeBufferPointer(rebasing: all[start..<end])
                let first = position == 0
                let last = end == all.count
                try forward(chunk, logits: last, columnSums: compressor.needsAttentionColumnSums) {
                    (pass: LayerPass) throws(KVError) in
                    try compressor.afterPrefill(
                        layer: pass.layer, queries: pass.queries, preRoPEQueries: pass.preRoPEQueries,
                        queryTokenStride: model.config.hidden, positions: pass.positions, count: pass.tokenCount,
                        totalLength: Int(pass.positions[pass.tokenCount - 1]) + 1,
                        isFirstChunk: first, isLastChunk: last, pool: pool,
                        attentionColumnSums: pass.attentionColumnSums)
                }
                start = end
            }
        }
        try compressor.finishPrefill(pool: pool)
        return lastLogits
    }

    /// Runs one token and returns its logits.
    public func decode(_ token: Int32) throws(KVError) -> [Float] {
        try checkCapacity(adding: 1)
        try [token].withUnsafeBufferPointer { (one: UnsafeBufferPointer<Int32>) throws(KVError) in
            try forward(one, logits: true, columnSums: compressor.needsAttentionColumnSums) { (pass: LayerPass) throws(KVError) in
                try compressor.afterDecode(layer: pass.layer, query: pass.queries,
                                           preRoPEQuery: pass.preRoPEQueries, position: pass.positions[0], pool: pool,
                                           attentionColumnSums: pass.attentionColumnSums)
            }
        }
        return lastLogits
    }

    private func checkCapacity(adding count: Int) throws(KVError) {
        let limit = model.config.contextLength
        if position + count > limit {
            throw .capacityExceeded("\(position) + \(count) tokens exceed the model's context length \(limit); "
                + "start a new session or use a shorter prompt")
        }
    }

    /// Generates a continuation of `prompt`, streaming decoded text pieces to `onText` as soon as
    /// they form complete UTF-8.
    /// - Parameters:
    ///   - maxTokens: upper bound on generated tokens (>= 1).
    ///   - stopTokens: ids that end generation (default: the tokenizer's EOS).
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
            logits = try decode(next)
            steps += 1
        }
        let decodeTime = clock.now - t1
        let tail = decoder.finish()
        if !tail.isEmpty { text += tail; onText(tail) }
        return GenerationResult(tokens: generated, text: text, stopReason: reason,
                                promptTokens: promptTokens.count, prefillSeconds: prefillTime.seconds,
                                decodeSteps: steps, decodeSeconds: decodeTime.seconds,
                                cacheBytes: cache.byteCount)
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
