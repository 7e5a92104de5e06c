import Foundation
import KVCompress
import XCTest
@testable import KVModel

/// DMS (kvpress `DMSPress`) over Knorm and over KVzap's two surrogate kinds, against kvpress 0.5.5 on
/// the fixture prompt (exact mode, one pass, `Fixtures/kvpress_kept_more.json`). No KVzap surrogate is
/// published for the default model, so both run with the seeded stand-ins of `Scripts/kvzap_fixture.py`
/// (`Fixtures/kvzap-linear`, f32, and `Fixtures/kvzap-mlp`, bf16, in the published format), which
/// kvpress's `KVzapPress` read too. A head counts as equal when its kept set is kvpress's, or when
/// every position kept by one side only scores within 1e-4 of the threshold in our scores (a near tie).
final class DMSParityTests: XCTestCase {
    func testDMSOverKnormAndKVzapMatchesKvpress() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
        let linear = try KVzapSurrogate(directory: fixtures.appendingPathComponent("kvzap-linear").path)
        let mlp = try KVzapSurrogate(directory: fixtures.appendingPathComponent("kvzap-mlp").path)
        XCTAssertNil(linear.hiddenSize)
        XCTAssertEqual(mlp.hiddenSize, 16)
        let kept = try KVPressRatioParityTests.fixtureKept()
        let model = try TestSupport.model(.exact)
        let ids = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        let cases: [(press: String, threshold: String, scorer: any KVScorer)] = [
            ("DMSPress(KnormPress)", "-19", KnormScorer()),
            ("DMSPress(KVzapPress(linear))", "0", KVzapScorer(surrogate: linear)),
            ("DMSPress(KVzapPress(mlp))", "0", KVzapScorer(surrogate: mlp)),
        ]
        // Through the catalog, as `kvcompress kept --policy DMSPress@T:KVzapPress --kvzap DIR` builds them.
        let sessions = try cases.map { c in
            let name = c.press.contains("KVzap") ? "DMSPress@\(c.threshold):KVzapPress" : "DMSPress@\(c.threshold):KnormPress"
            let patterns = KVHeadPatterns(kvzap: c.press.contains("mlp") ? mlp : linear)
            let policy = try KVPolicyCatalog.make(name, budget: .compressionRatio(0), patterns: patterns)
            return try LlamaSession(model: model, policy: policy, chunkSize: ids.count)
        }
        let shared = try sessions[0].prefill(ids, sharingWith: Array(sessions.dropFirst()))
        for (c, session) in zip(cases, sessions) {
            let entry = try XCTUnwrap((kept[c.press] as? [String: Any])?[c.threshold] as? [String: Any], c.press)
            let reference = try XCTUnwrap(entry["kept"] as? [[String]])
            let threshold = try XCTUnwrap(Float(c.threshold))
            var recorded: [[[Float]]]?  // our scores of the uncompressed prompt, computed at the first difference
            var exact = 0, near = 0, evicted = 0
            var differing: [String] = []
            for (l, heads) in reference.enumerated() {
                let ours = session.cache.keptPositions(layer: l)
                for (m, hex) in heads.enumerated() {
                    let theirs = KVPressRatioParityTests.positions(hex: hex), mine = Set(ours[m])
                    evicted += ids.count - mine.count
                    if mine == theirs { exact += 1; continue }
                    if recorded == nil { recorded = try Self.recorded(c.scorer, model: model, ids: ids) }
                    if mine.symmetricDifference(theirs).allSatisfy({ abs(recorded![l][m][$0] - threshold) <= 1e-4 }) {
                        near += 1
                    } else {
                        differing.append("(\(l), \(m)): only ours \(mine.subtracting(theirs).sorted().prefix(4)), "
                            + "only kvpress \(theirs.subtracting(mine).sorted().prefix(4))")
                    }
                }
            }
            let total = reference.count * reference[0].count
            print("parity \(c.press) at threshold \(c.threshold): \(exact)/\(total) heads exactly equal, \(near) more differ only "
                + "at scores within 1e-4 of the threshold; \(evicted) of \(total * ids.count) entries evicted"
                + (differing.isEmpty ? "" : "; differing " + differing.joined(separator: "; ")))
            XCTAssertGreaterThanOrEqual(Double(exact + near) / Double(total), 0.99, c.press)
            XCTAssertGreaterThan(evicted, 0, "\(c.press) evicted nothing")
            let expected = try XCTUnwrap(entry["answer_ids"] as? [Int]).map(Int32.init)
            var logits = shared.logits
            var answer: [Int32] = []
            while answer.count < expected.count {
                answer.append(logits.withUnsafeBufferPointer { Sampler.argmax($0) })
                logits = try session.decode(answer.last!)
            }
            XCTAssertEqual(answer, expected, "\(c.press): greedy answer \(model.tokenizer.decode(answer).debugDescription)")
        }
    }

    /// A scorer's scores of the uncompressed prompt.
    private static func recorded<S: KVScorer>(_ scorer: S, model: LlamaModel, ids: [Int32]) throws -> [[[Float]]] {
        try KVPressRatioParityTests.recordedScores(scorer, model: model, ids: ids)
    }

    /// The surrogate reader refuses what is not KVzap's format, with the reason.
    func testSurrogateFilesAreChecked() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvzap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try KVzapSurrogate(directory: dir.path)) { XCTAssertTrue("\($0)".contains("config.json"), "\($0)") }
        try Data(#"{"input_dim": 576, "output_dim": 3, "n_modules": 30, "hidden_dim": null}"#.utf8)
            .write(to: dir.appendingPathComponent("config.json"))
        let weights = dir.appendingPathComponent("model.safetensors")
        for (bytes, reason) in [([UInt8](repeating: 0, count: 5), "fewer than 8"),
                                ([200, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8), "truncated"),
                                ([2, 0, 0, 0, 0, 0, 0, 0] + Array("[]".utf8), "JSON object")] {
            try Data(bytes).write(to: weights)
            XCTAssertThrowsError(try KVzapSurrogate(directory: dir.path)) { XCTAssertTrue("\($0)".contains(reason), "\($0)") }
        }
        // A header whose tensor claims more bytes than the file holds, then a well-formed file without the weights.
        let header = Array(#"{"layers.0.bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}"#.utf8)
        var length = [UInt8](repeating: 0, count: 8)
        length[0] = UInt8(header.count)
        try Data(length + header + [0, 0, 0, 0]).write(to: weights)
        XCTAssertThrowsError(try KVzapSurrogate(directory: dir.path)) { XCTAssertTrue("\($0)".contains("data_offsets"), "\($0)") }
        try Data(length + header + [UInt8](repeating: 0, count: 12)).write(to: weights)
        XCTAssertThrowsError(try KVzapSurrogate(directory: dir.path)) { XCTAssertTrue("\($0)".contains("layers.0.weight"), "\($0)") }
    }
}
