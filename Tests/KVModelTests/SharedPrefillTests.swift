import KVCompress
import XCTest
@testable import KVModel

/// One shared prompt pass feeding several policies gives each the cache, and then the decoding,
/// it would have had prefilling the prompt alone.
final class SharedPrefillTests: XCTestCase {
    func testFollowersMatchSessionsThatPrefilledAlone() throws {
        let model = try TestSupport.model(.fast)
        let ids = Array(try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")[0..<700])
        let policies: [any KVCachePolicy] = [
            try SnapKV(compressionRatio: 0.5), try H2O(compressionRatio: 0.75), try ExpectedAttention(compressionRatio: 0.5),
            try StreamingLLM(sinks: 4, window: 100), try AdaKV(scorer: SnapKVScorer(), budget: .compressionRatio(0.6)),
        ]
        let lead = try LlamaSession(model: model, chunkSize: ids.count)
        let followers = try policies.map { try LlamaSession(model: model, policy: $0, chunkSize: 1) }
        let shared = try lead.prefill(ids, sharingWith: followers)
        XCTAssertEqual(shared.lastQueries.count, model.config.layers)
        for (policy, follower) in zip(policies, followers) {
            let alone = try LlamaSession(model: model, policy: policy, chunkSize: ids.count)
            let logits = try alone.prefill(ids)
            XCTAssertEqual(logits, shared.logits, policy.name)
            for l in 0..<model.config.layers {
                XCTAssertEqual(follower.cache.keptPositions(layer: l), alone.cache.keptPositions(layer: l), "\(policy.name) layer \(l)")
            }
            XCTAssertLessThan(follower.cache.byteCount, lead.cache.byteCount, policy.name)
            let next = Int32(7042)
            XCTAssertEqual(try follower.decode(next), try alone.decode(next), policy.name)
        }
        // The lead keeps the full cache; followers must be fresh.
        XCTAssertEqual(lead.cache.totalEntries, 30 * 3 * ids.count)
        XCTAssertThrowsError(try lead.prefill(ids, sharingWith: followers))
        XCTAssertThrowsError(try LlamaSession(model: model, chunkSize: 8).prefill(ids, sharingWith: []))
    }
}
