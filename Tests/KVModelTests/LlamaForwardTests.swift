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
