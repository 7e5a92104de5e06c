import Foundation
import XCTest
@testable import KVModel

/// `LlamaSession.perplexity` against transformers float32 (Scripts/perplexity_reference.py).
final class PerplexityTests: XCTestCase {
    /// The reference: the 1510 passkey-prompt ids and the NLL transformers gives each of tokens 1...
    func reference() throws -> (ids: [Int32], meanNLL: Double) {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/perplexity_reference.json")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let ids = try XCTUnwrap(json["ids"] as? [Int]).map(Int32.init)
        let nll = try XCTUnwrap(json["nll"] as? [Double])
        XCTAssertEqual(nll.count, ids.count - 1)
        return (ids, nll.reduce(0, +) / Double(nll.count))
    }

    /// Exact mode with the full cache: the same mean NLL as transformers, in one chunk or in
    /// chunks of 100 (each chunk scored against the cache of the ones before).
    func testExactPerplexityMatchesTransformers() throws {
        let (ids, want) = try reference()
        XCTAssertEqual(ids, try TestSupport.ids("passkey_prompt.json", key: "prompt_ids"))
        let model = try TestSupport.model(.exact)
        for chunk in [ids.count, 100] {
            let r = try LlamaSession(model: model, chunkSize: chunk).perplexity(tokens: ids)
            XCTAssertEqual(r.tokens, ids.count)
            XCTAssertEqual(r.scoredTokens, ids.count - 1)
            XCTAssertFalse(r.stoppedAtContextLength)
            XCTAssertEqual(r.meanNegativeLogLikelihood, want, accuracy: 2e-5, "chunk \(chunk)")
            XCTAssertEqual(r.perplexity, exp(want), accuracy: 1e-4)
            XCTAssertEqual(r.peakCacheBytes, r.finalCacheBytes)
        }
        // Fast mode (quantized weights and activations, f16 cache) stays close.
        let fast = try LlamaSession(model: TestSupport.model(.fast), chunkSize: 512).perplexity(tokens: ids)
        XCTAssertEqual(fast.meanNegativeLogLikelihood, want, accuracy: 0.02)
    }

    /// Scoring stops before the chunk that would reach the context length, keeping what it scored.
    func testScoringStopsAtTheContextLength() throws {
        let (ids, _) = try reference()
        let session = try LlamaSession(model: TestSupport.model(.fast, contextLength: 300), chunkSize: 128)
        let r = try session.perplexity(tokens: ids)
        XCTAssertTrue(r.stoppedAtContextLength)
        XCTAssertEqual(r.tokens, 256)
        XCTAssertEqual(r.scoredTokens, 256)   // tokens 1...256: the last row fed predicts token 256
        XCTAssertTrue(r.perplexity.isFinite)
    }

    func testBadInputIsATypedError() throws {
        let session = try LlamaSession(model: TestSupport.model(.fast))
        for (tokens, maxTokens) in [([Int32(5)], nil), ([5, 6, 7], 1), ([5, -1, 7], nil), ([5, 49_152], nil)] as [([Int32], Int?)] {
            XCTAssertThrowsError(try session.perplexity(tokens: tokens, maxTokens: maxTokens)) {
                guard case KVError.invalidParameter = $0 else { return XCTFail("\($0)") }
            }
        }
    }
}
