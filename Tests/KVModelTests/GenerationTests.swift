import XCTest
@testable import KVModel

final class GenerationTests: XCTestCase {
    func testStopsAtMaxTokens() throws {
        let model = try TestSupport.model(.fast)
        let r = try LlamaSession(model: model).generate(prompt: "The capital of France is", maxTokens: 3)
        XCTAssertEqual(r.tokens.count, 3)
        XCTAssertEqual(r.stopReason, .maxTokens)
        XCTAssertEqual(r.decodeSteps, 2)
        XCTAssertEqual(r.text, model.tokenizer.decode(r.tokens))
    }

    func testStopsAtEOSOfAChatTurn() throws {
        let model = try TestSupport.model(.fast)
        let prompt = "<|im_start|>user\nSay hello in one word.<|im_end|>\n<|im_start|>assistant\n"
        var streamed = ""
        let r = try LlamaSession(model: model).generate(prompt: prompt, maxTokens: 64) { streamed += $0 }
        XCTAssertEqual(r.stopReason, .stopToken, "no EOS within 64 tokens: \(r.text.debugDescription)")
        XCTAssertFalse(r.tokens.contains(model.tokenizer.eosTokenID))
        XCTAssertEqual(streamed, r.text)
    }

    func testCallerStopTokenEndsImmediately() throws {
        let model = try TestSupport.model(.fast)
        let ids = try TestSupport.ids("hf_fixed_prompt.json", key: "prompt_ids")
        let r = try LlamaSession(model: model).generate(promptTokens: ids, maxTokens: 5, stopTokens: [7042])  // " Paris"
        XCTAssertEqual(r.tokens, [])
        XCTAssertEqual(r.stopReason, .stopToken)
    }

    func testSeededSamplingIsReproducible() throws {
        let model = try TestSupport.model(.fast)
        let p = try SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, seed: 42)
        let a = try LlamaSession(model: model).generate(prompt: "Once upon a time", maxTokens: 12, sampling: p)
        let b = try LlamaSession(model: model).generate(prompt: "Once upon a time", maxTokens: 12, sampling: p)
        XCTAssertEqual(a.tokens, b.tokens)
        var differs = false
        for seed in 1...4 where !differs {
            let q = try SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, seed: UInt64(seed) + 42)
            differs = try LlamaSession(model: model).generate(prompt: "Once upon a time", maxTokens: 12, sampling: q).tokens != a.tokens
        }
        XCTAssertTrue(differs, "four other seeds all reproduced the same 12 tokens")
    }

    func testSamplerRespectsTopK() throws {
        let logits: [Float] = [0, 5, 4, 3, -1]
        var s = Sampler(try SamplingParameters(temperature: 1, topK: 2, topP: 1, seed: 7))
        var seen = Set<Int32>()
        for _ in 0..<500 { seen.insert(logits.withUnsafeBufferPointer { s.sample($0) }) }
        XCTAssertEqual(seen, [1, 2])
        XCTAssertEqual(logits.withUnsafeBufferPointer { Sampler.argmax($0) }, 1)
    }

    func testBadInputIsRejected() throws {
        XCTAssertThrowsError(try SamplingParameters(temperature: -1))
        XCTAssertThrowsError(try SamplingParameters(temperature: 1, topP: 0))
        XCTAssertThrowsError(try SamplingParameters(temperature: 1, topK: -3))
        let model = try TestSupport.model(.fast)
        let session = try LlamaSession(model: model)
        XCTAssertThrowsError(try session.prefill([])) { XCTAssertEqual($0 as? KVError, .emptyPrompt) }
        XCTAssertThrowsError(try session.prefill([Int32(model.config.vocab)])) { error in
            guard case KVError.invalidParameter = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try session.generate(prompt: "x", maxTokens: 0))
        XCTAssertThrowsError(try LlamaSession(model: model, chunkSize: 0))
    }
}
