import Foundation
import XCTest
import KVCompress

/// The "Driving the cache" article's program: it runs, and the article quotes it exactly.
final class DrivingTheCacheTests: XCTestCase {
    func testTheArticleProgramRuns() throws {
        let snap = try drivingTheCache(policy: try SnapKV(compressionRatio: 0.5))
        let streaming = try drivingTheCache(policy: try StreamingLLM(sinks: 4, window: 60, repositionKeys: true))
        let full = try drivingTheCache(policy: FullCache())
        for l in 0..<2 {
            for m in 0..<2 {
                XCTAssertEqual(snap.count(layer: l, head: m), 150 + 20)
                XCTAssertEqual(streaming.count(layer: l, head: m), 64)
                XCTAssertEqual(full.positions(layer: l, head: m), (0..<320).map { Int32($0) })
                XCTAssertEqual(Array(snap.positions(layer: l, head: m).suffix(20)), (300..<320).map { Int32($0) })
            }
        }
        XCTAssertEqual(snap.nextPosition, 320)
        XCTAssertEqual(streaming.nextPosition, 320)   // in-cache positions end just before the next token
        XCTAssertEqual(streaming.positions(layer: 1, head: 1), (256..<320).map { Int32($0) })
        XCTAssertEqual(snap.byteCount, 4 * 170 * snap.bytesPerEntry + snap.metadataBytes)
    }

    func testTheArticleQuotesTheProgram() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let source = try String(contentsOf: here.appendingPathComponent("DrivingTheCacheExample.swift"), encoding: .utf8)
        let article = try String(contentsOf: here.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/KVCompress/KVCompress.docc/DrivingTheCache.md"), encoding: .utf8)
        let program = try XCTUnwrap(source.components(separatedBy: "// BEGIN ARTICLE\n").last?
            .components(separatedBy: "// END ARTICLE\n").first)
        let block = try XCTUnwrap(article.components(separatedBy: "```swift\n").dropFirst().first?
            .components(separatedBy: "```").first)
        XCTAssertEqual(block, program)
    }
}
