import Foundation
import XCTest
@testable import KVCompress

/// Checks against the kvpress 0.5.5 reference data that need no model forward pass. The fixtures
/// live outside the package (`reference/fixtures` of the project's shared folder); set
/// `KVCOMPRESS_FIXTURES` to their directory, otherwise the sibling `shared/reference/fixtures`
/// folders next to the package are tried and the tests skip when none exists.
final class KvpressFixtureTests: XCTestCase {
    static func fixturesDirectory() -> URL? {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["KVCOMPRESS_FIXTURES"] {
            candidates.append(URL(fileURLWithPath: env))
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        candidates.append(root.appendingPathComponent("../shared/reference/fixtures"))
        candidates.append(root.appendingPathComponent("../../shared/reference/fixtures"))
        return candidates.first {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("kvpress_kept_r050.json").path)
        }
    }

    func kept(_ press: String) throws -> [[[Int]]] {
        guard let dir = Self.fixturesDirectory() else { throw XCTSkip("kvpress fixtures not found") }
        let data = try Data(contentsOf: dir.appendingPathComponent("kvpress_kept_r050.json"))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let kept = json["kept"] as! [String: Any]
        return (kept[press] as! [String: Any])["0.5"] as! [[[Int]]]
    }

    /// StreamingLLM's kept sets depend only on the length: every layer and head of the fixture.
    func testStreamingLLMMatchesKvpress() throws {
        let want = try kept("StreamingLLMPress")
        let shape = SyntheticPrompt.shape(layers: 30, heads: 9, kvHeads: 3, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 1510, seed: 1, scale: 1)
        let cache = p.makeCache(.f16)
        try p.prefill(StreamingLLM(compressionRatio: 0.5), cache: cache)
        for l in 0..<30 { XCTAssertEqual(cache.keptPositions(layer: l), want[l], "layer \(l)") }
    }

    /// Top-k (with the documented tie-break) of kvpress's raw SnapKV scores reproduces kvpress's kept
    /// sets: the selection half of SnapKV on real data.
    func testSelectionOfKvpressSnapKVScoresMatchesKvpress() throws {
        let want = try kept("SnapKVPress")
        let dir = Self.fixturesDirectory()!
        let raw = try Data(contentsOf: dir.appendingPathComponent("snapkv_scores_30x3x1510.f32"))
        XCTAssertEqual(raw.count, 30 * 3 * 1510 * 4)
        let scores: [Float] = raw.withUnsafeBytes { b in
            (0..<(30 * 3 * 1510)).map { Float(bitPattern: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        let n = KVBudget.keptCount(length: 1510, compressionRatio: 0.5)
        XCTAssertEqual(n, 755)
        let positions = (0..<1510).map { Int32($0) }
        var mismatches = 0
        for l in 0..<30 {
            for m in 0..<3 {
                let s = Array(scores[((l * 3 + m) * 1510)..<((l * 3 + m + 1) * 1510)])
                let got = try XCTUnwrap(try KVSelection.topK(scores: s, positions: positions, k: n))
                if got != want[l][m] {
                    // Only exact ties at the boundary may differ (PyTorch's topk order is unspecified).
                    let boundary = s[try KVSelection.ranking(scores: s, positions: positions)[n - 1]]
                    for j in Set(got).symmetricDifference(want[l][m]) { XCTAssertEqual(s[j], boundary, "layer \(l) head \(m) row \(j)") }
                    mismatches += 1
                }
            }
        }
        XCTAssertLessThanOrEqual(mismatches, 3)
    }
}
