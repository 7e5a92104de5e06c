import XCTest
@testable import KVModel

final class LlamaForwardTests: XCTestCase {
    func testExactLogitsMatchFixture() throws {
        let model = try TestSupport.model(.exact)
        let ids = try TestSupport.ids("hf_fixed_prompt.json", key: "prompt_ids")
        let reference = try TestSupport.floats("fixed_prompt_logits.f32")
        let session = try LlamaSession(model: model)
        let logits = try session.prefill(ids)
        XCTAssertEqual(logits.count, reference.count)
        let maxDiff = zip(logits, reference).map { abs($0 - $1) }.max() ?? .infinity
        print("exact mode: max |logit - reference| = \(maxDiff)")
        XCTAssertLessThan(maxDiff, 0.02)
    }
}

extension LlamaForwardTests {
    func testExactGreedyContinuationMatchesFixture() throws {
        let model = try TestSupport.model(.exact)
        let ids = try TestSupport.ids("hf_fixed_prompt.json", key: "prompt_ids")
        let expected = try TestSupport.ids("hf_fixed_prompt.json", key: "greedy20_ids")
        let session = try LlamaSession(model: model)
        let result = try session.generate(promptTokens: ids, maxTokens: 20, stopTokens: [])
        XCTAssertEqual(result.tokens, expected)
    }

    func testFastModeAgreesOnTopTokens() throws {
        let model = try TestSupport.model(.fast)
        let ids = try TestSupport.ids("hf_fixed_prompt.json", key: "prompt_ids")
        let reference = try TestSupport.floats("fixed_prompt_logits.f32")
        let logits = try LlamaSession(model: model).prefill(ids)
        func top(_ x: [Float], _ k: Int) -> [Int] { Array(x.indices.sorted { x[$0] > x[$1] }.prefix(k)) }
        XCTAssertEqual(top(logits, 1), top(reference, 1))
        XCTAssertEqual(Set(top(logits, 5)), Set(top(reference, 5)))
        let maxDiff = zip(logits, reference).map { abs($0 - $1) }.max() ?? .infinity
        print("fast mode: max |logit - reference| = \(maxDiff)")
        // Greedy: token 9 of the reference continuation is a near tie (" " beats "\n" by 0.04 logits
        // in the f32 reference). Fast mode with an f32 cache keeps it; with the default f16 cache
        // the int8-activation error flips it, so the f16 case is held to the first 8 tokens.
        let expected = try TestSupport.ids("hf_fixed_prompt.json", key: "greedy20_ids")
        let f32Cache = try LlamaSession(model: model, cacheType: .f32)
            .generate(promptTokens: ids, maxTokens: 10, stopTokens: [])
        XCTAssertEqual(f32Cache.tokens, Array(expected.prefix(10)))
        let f16Cache = try LlamaSession(model: model, cacheType: .f16)
            .generate(promptTokens: ids, maxTokens: 8, stopTokens: [])
        XCTAssertEqual(f16Cache.tokens, Array(expected.prefix(8)))
    }

    func testPasskeyWithFullCacheAnswers() throws {
        let model = try TestSupport.model(.exact)
        let ids = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        let session = try LlamaSession(model: model, chunkSize: ids.count)
        let result = try session.generate(promptTokens: ids, maxTokens: 6, stopTokens: [])
        // " 71432" is tokenized as " ", "7", "1", "4", "3", "2" (ids from kvpress_answers_r050.json).
        XCTAssertEqual(result.tokens, [216, 39, 33, 36, 35, 34])
    }
}
