import KVCompress
import XCTest
@testable import KVModel

/// Positions owned by the cache, streams past the context length, and the stop at it.
final class StreamingTests: XCTestCase {
    /// In a one-layer model a token's key and value depend only on the token and its position, so
    /// a StreamingLLM cache with re-positioned keys must give the next token exactly the logits of a
    /// fresh session fed only the kept tokens at contiguous positions. Exact mode; the tolerance
    /// (2e-6 of the largest logit) covers f32 rounding (RoPE angles at other positions, summation
    /// order).
    func testRepositionedCacheMatchesAFreshSessionOnTheKeptTokens() throws {
        let model = try TestSupport.model(.exact, layers: 1)
        let ids = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        func maxDifference(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }
        let fresh = { (tokens: [Int32]) throws -> [Float] in try LlamaSession(model: model).prefill(tokens) }
        let stream = try LlamaSession(model: model, policy: StreamingLLM(sinks: 4, window: 12, repositionKeys: true),
                                      chunkSize: 8)
        _ = try stream.prefill(Array(ids[0..<40]))
        var got = try stream.decode(ids[40])
        // The cache holds tokens 0..<4 and 29...40 at the consecutive positions 25...40.
        XCTAssertEqual(stream.cache.positions(layer: 0, head: 0), (25...40).map { Int32($0) })
        var want = try fresh(Array(ids[0..<4]) + Array(ids[29...40]))
        let tolerance = 2e-6 * want.map(abs).max()!   // 1.5e-4 here; measured 1.1e-5
        XCTAssertLessThan(maxDifference(got, want), tolerance)
        // Twenty more steps, then again.
        for t in 41..<61 { got = try stream.decode(ids[t]) }
        want = try fresh(Array(ids[0..<4]) + Array(ids[49...60]))
        XCTAssertLessThan(maxDifference(got, want), tolerance)
        print("re-positioned StreamingLLM vs fresh session on the kept tokens: max logit difference",
              maxDifference(got, want), "(tolerance \(tolerance))")
        XCTAssertEqual(stream.position, 61)
        XCTAssertEqual(stream.processedTokens, 61)
        // Without re-positioning the sinks stay at 0..<4, far from the window: the logits differ,
        // which is what the test above would see if positions were wrong.
        let original = try LlamaSession(model: model, policy: StreamingLLM(sinks: 4, window: 12), chunkSize: 8)
        _ = try original.prefill(Array(ids[0..<40]))
        for t in 40..<60 { _ = try original.decode(ids[t]) }
        XCTAssertGreaterThan(maxDifference(try original.decode(ids[60]), want), 1000 * tolerance)
    }

    /// Teacher-forced scoring of 1510 tokens on a model whose context length is cut to 256: with
    /// StreamingLLM re-positioning, positions move back to 0 every ~190 tokens and the perplexity
    /// equals the one without those moves (same model, full context length) up to the rounding of
    /// the moved f16 keys; the cache never exceeds sinks + window entries.
    func testStreamingPastTheContextLengthInBoundedMemory() throws {
        let ids = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        let policy = try StreamingLLM(sinks: 4, window: 60, repositionKeys: true)
        let short = try LlamaSession(model: TestSupport.model(.fast, contextLength: 256), policy: policy, chunkSize: 32)
        var maxPosition = 0
        let a = try short.perplexity(tokens: ids) { _, _ in maxPosition = max(maxPosition, short.position) }
        let b = try LlamaSession(model: TestSupport.model(.fast), policy: policy, chunkSize: 32).perplexity(tokens: ids)
        XCTAssertFalse(a.stoppedAtContextLength)
        XCTAssertEqual(a.scoredTokens, 1509)
        XCTAssertLessThanOrEqual(maxPosition, 256)
        let window = 30 * 3 * 64 * short.cache.bytesPerEntry + short.cache.metadataBytes
        XCTAssertEqual(a.peakCacheBytes, window)
        XCTAssertEqual(b.peakCacheBytes, window)
        XCTAssertEqual(a.perplexity / b.perplexity, 1, accuracy: 0.01, "\(a.perplexity) vs \(b.perplexity)")
        // And it is a sensible perplexity for this prompt (full cache, exact: 1.30).
        XCTAssertLessThan(a.perplexity, 2)
    }

    /// Without a bounded, re-positioning policy, generation that reaches the context length stops
    /// there and keeps what it generated; with one it goes on in bounded memory.
    func testGenerationAtTheContextLength() throws {
        let model = try TestSupport.model(.fast, contextLength: 64)
        let prompt = Array(try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")[0..<50])
        let full = try LlamaSession(model: model)
        let r = try full.generate(promptTokens: prompt, maxTokens: 100, stopTokens: [])
        XCTAssertEqual(r.stopReason, .contextFull)
        XCTAssertEqual(r.tokens.count, 15)   // positions 50...63 fed back, the 15th token sampled
        XCTAssertEqual(r.text, model.tokenizer.decode(r.tokens))
        XCTAssertEqual(full.position, 64)
        XCTAssertThrowsError(try full.decode(r.tokens.last!)) {
            guard case KVError.capacityExceeded = $0 else { return XCTFail("\($0)") }
        }
        // A prompt longer than the context length is an error without such a policy ...
        let long = Array(try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")[0..<100])
        XCTAssertThrowsError(try LlamaSession(model: model).generate(promptTokens: long, maxTokens: 1)) {
            guard case KVError.capacityExceeded = $0 else { return XCTFail("\($0)") }
        }
        // ... and fine with one, as is a generation well past the context length.
        let streaming = try LlamaSession(model: model, policy: StreamingLLM(sinks: 4, window: 28, repositionKeys: true),
                                         chunkSize: 16)
        let s = try streaming.generate(promptTokens: long, maxTokens: 200, stopTokens: [])
        XCTAssertEqual(s.stopReason, .maxTokens)
        XCTAssertEqual(s.tokens.count, 200)
        XCTAssertEqual(s.peakCacheBytes, 30 * 3 * 32 * streaming.cache.bytesPerEntry + streaming.cache.metadataBytes)
        XCTAssertLessThanOrEqual(streaming.position, 64)
        XCTAssertEqual(streaming.processedTokens, 100 + 199)
    }

    /// A step interrupted by an error leaves the sequence incomplete: the next step says so until
    /// reset.
    func testInterruptedStepNeedsAReset() throws {
        let model = try TestSupport.model(.fast)
        let session = try LlamaSession(model: model, policy: ThrowingPolicy(), chunkSize: 8)
        XCTAssertThrowsError(try session.prefill([1, 2, 3])) { XCTAssertEqual($0 as? KVError, .cancelled) }
        XCTAssertThrowsError(try session.decode(4)) {
            guard case KVError.invalidState(let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("reset()"), message)
        }
        session.reset()
        XCTAssertEqual(session.cache.totalEntries, 0)
        XCTAssertThrowsError(try session.prefill([1, 2, 3]))   // the policy throws again, after a clean start
    }
}

/// A policy that fails in layer 2 of every prefill.
private struct ThrowingPolicy: KVCachePolicy {
    func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
        if context.layer == 2 { throw .cancelled }
    }
}
