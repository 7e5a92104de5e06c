import XCTest
@testable import KVModel

/// The evaluation's seeded retrieval prompts.
final class RetrievalPromptTests: XCTestCase {
    func testPasskeyPromptsAreSeededSizedAndPlaced() throws {
        let tokenizer = try TestSupport.model(.fast).tokenizer
        let longest = try RetrievalPrompt.fillerSentences.map { try tokenizer.encode(" " + $0, parseSpecial: false).count }.max()!
        for context in [512, 2048] {
            for depth in [0.0, 0.5, 1.0] {
                let a = try RetrievalPrompt.passkey(tokenizer: tokenizer, context: context, depth: depth, seed: 3)
                let b = try RetrievalPrompt.passkey(tokenizer: tokenizer, context: context, depth: depth, seed: 3)
                let c = try RetrievalPrompt.passkey(tokenizer: tokenizer, context: context, depth: depth, seed: 4)
                XCTAssertEqual(a.ids, b.ids)
                XCTAssertNotEqual(a.ids, c.ids)
                XCTAssertNotEqual(a.expected, c.expected)
                XCTAssertLessThanOrEqual(a.ids.count, context)
                XCTAssertGreaterThan(a.ids.count, context - longest - 4, "context \(context)")
                let text = tokenizer.decode(a.ids)
                XCTAssertEqual(a.expected.count, 5)
                XCTAssertTrue(text.hasSuffix("What is the pass key? The pass key is"))
                // The key sits at the requested depth of the filler.
                let key = try XCTUnwrap(text.range(of: "The pass key is \(a.expected)."))
                let fraction = Double(text.distance(from: text.startIndex, to: key.lowerBound)) / Double(text.count)
                XCTAssertEqual(fraction, depth, accuracy: 0.08, "depth \(depth) context \(context)")
            }
        }
    }

    func testNeedlePromptsAskForOneOfSeveralKeys() throws {
        let tokenizer = try TestSupport.model(.fast).tokenizer
        let p = try RetrievalPrompt.needle(tokenizer: tokenizer, context: 1024, keys: 4, seed: 9)
        let text = tokenizer.decode(p.ids)
        let keys = text.matches(of: /The pass key for the (\w+) door is (\d{5})\./).map { (String($0.1), String($0.2)) }
        XCTAssertEqual(keys.count, 4)
        XCTAssertEqual(Set(keys.map(\.1)).count, 4)
        let asked = try XCTUnwrap(text.firstMatch(of: /What is the pass key for the (\w+) door\?/)).1
        XCTAssertEqual(keys.first { $0.0 == asked }?.1, p.expected)
        XCTAssertThrowsError(try RetrievalPrompt.needle(tokenizer: tokenizer, context: 1024, keys: 0, seed: 1))
    }
}
