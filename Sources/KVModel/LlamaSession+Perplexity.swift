import CKVKernels
import Foundation
import KVCompress
import KVCore

extension LlamaSession {
    /// Teacher-forced perplexity of `tokens` under the session's policy, as a new sequence.
    ///
    /// The tokens are fed in chunks of ``chunkSize``; each chunk is a prompt of its own, so the
    /// policy compresses after every chunk (a rolling policy cuts each head back to its capacity;
    /// a policy with the ``KVSchedule/prefill`` schedule compresses only the first chunk, as kvpress
    /// compresses only the first prompt) and the next chunk is scored against the compressed cache.
    /// Token `i` (for `i >= 1`) is scored by the logits of token `i - 1`, which saw every token
    /// before it that the cache still holds; the result is
    /// `exp(mean over i in 1..<N of -ln p(token[i] | tokens before it))`.
    ///
    /// With a policy that bounds the cache and re-positions keys (StreamingLLM with
    /// `repositionKeys`), the text may be longer than the model's context length; otherwise scoring
    /// stops before the chunk that would reach it (``PerplexityResult/stoppedAtContextLength``).
    ///
    /// - Parameters:
    ///   - tokens: the token ids (no special tokens are added).
    ///   - maxTokens: score only the first `maxTokens` tokens (nil: all).
    ///   - progress: called after each chunk with (tokens fed so far, tokens to feed).
    /// - Throws: `KVError.invalidParameter` for fewer than 2 tokens, an id outside the vocabulary or
    ///   `maxTokens < 2`; `.cancelled` when the surrounding task is cancelled.
    public func perplexity(tokens: [Int32], maxTokens: Int? = nil,
                           progress: (Int, Int) -> Void = { _, _ in }) throws(KVError) -> PerplexityResult {
        if let maxTokens, maxTokens < 2 {
            throw .invalidParameter(name: "maxTokens", value: "\(maxTokens)", expected: ">= 2 (one token to condition on, one to score)")
        }
        let ids = Array(tokens.prefix(maxTokens ?? tokens.count))
        guard ids.count >= 2 else {
            throw .invalidParameter(name: "tokens", value: "\(ids.count) tokens",
                                    expected: "at least 2 (the first is not scored)")
        }
        let vocab = model.config.vocab
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw .invalidParameter(name: "token id", value: "\(bad)", expected: "0..<\(vocab) (the model's vocabulary)")
        }
        reset()
        cache.resetPeakByteCount()
        let clock = ContinuousClock()
        let t0 = clock.now
        var nll = 0.0
        var fed = 0, scored = 0
        var stopped = false
        try ids.withUnsafeBufferPointer { (all: UnsafeBufferPointer<Int32>) throws(KVError) in
            while fed < all.count {
                let end = min(all.count, fed + chunkSize)
                do throws(KVError) {
                    try forward(UnsafeBufferPointer(rebasing: all[fed..<end]), decode: false, endsPrompt: true)
                } catch .capacityExceeded {
                    stopped = true
                    break
                }
                // Row t of the chunk scores the token after it (within the chunk or the next one).
                let rows = end - fed - (end == all.count ? 1 : 0)
                var r = 0
                while r < rows {
                    let block = min(Scratch.logitRows, rows - r)
                    computeLogits(rows: r..<(r + block))
                    for i in 0..<block {
                        nll += negativeLogLikelihood(row: scratch.logits + i * vocab, target: all[fed + r + i + 1])
                    }
                    scored += block
                    r += block
                }
                try runReplays(prompt: Array(all[fed..<end]))
                fed = end
                progress(fed, all.count)
            }
        }
        return PerplexityResult(tokens: fed, scoredTokens: scored, negativeLogLikelihood: nll,
                                stoppedAtContextLength: stopped, peakCacheBytes: cache.peakByteCount,
                                finalCacheBytes: cache.byteCount, seconds: (clock.now - t0).seconds)
    }

    /// `-ln softmax(logits)[target]`, computed as `max + ln(sum exp(x - max)) - x[target]` (the
    /// row is overwritten).
    private func negativeLogLikelihood(row: UnsafeMutablePointer<Float>, target: Int32) -> Double {
        let x = Double(row[Int(target)])
        var shift = -Float.infinity
        let sum = kvk_softmax_unnormalized(row, model.config.vocab, &shift)
        return Double(shift) + log(Double(sum)) - x
    }
}
