import XCTest
@testable import KVModel

final class TokenizerTests: XCTestCase {
    private func tokenizer() throws -> Tokenizer { try TestSupport.model(.fast).tokenizer }

    func testFixedPromptIDs() throws {
        let json = try TestSupport.json("hf_fixed_prompt.json")
        let text = try XCTUnwrap(json["prompt"] as? String)
        let expected = try TestSupport.ids("hf_fixed_prompt.json", key: "prompt_ids")
        XCTAssertEqual(try tokenizer().encode(text), expected)
    }

    func testPasskeyPromptIDs() throws {
        let json = try TestSupport.json("passkey_prompt.json")
        let context = try XCTUnwrap(json["context_text"] as? String)
        let question = try XCTUnwrap(json["question_text"] as? String)
        let expected = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        let t = try tokenizer()
        let clock = ContinuousClock()
        let start = clock.now
        let ids = try t.encode(context + question)
        let elapsed = clock.now - start
        XCTAssertEqual(ids.count, expected.count)
        XCTAssertEqual(ids, expected)
        XCTAssertEqual(t.decode(ids), context + question)
        XCTAssertLessThan(elapsed, .seconds(1))
    }

    func testRoundTripArbitraryUTF8() throws {
        let t = try tokenizer()
        let samples = [
            "", " ", "  leading and trailing  ", "tabs\tand\nnewlines\r\n\n", "I'll we've they'RE 's",
            "日本語のテキストと中文", "emoji 🤖👩‍👩‍👧 flags 🇫🇷", "combining e\u{301} a\u{308}\u{323}",
            "numbers 12345 ٣٤٥ Ⅻ ½", "symbols <>{}[]$#@!~`", "\u{0}\u{1F}\u{7F}", "<|im_start|>user\nhi<|im_end|>",
        ]
        for s in samples {
            XCTAssertEqual(t.decode(try t.encode(s)), s, "round trip of \(s.debugDescription)")
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let scalars = (0..<Int.random(in: 0..<40, using: &rng)).compactMap { _ -> Unicode.Scalar? in
                let ranges: [ClosedRange<UInt32>] = [0x20...0x7E, 0xA0...0x2FF, 0x4E00...0x4FFF, 0x1F300...0x1F6FF, 0x300...0x36F]
                return Unicode.Scalar(UInt32.random(in: ranges.randomElement(using: &rng)!, using: &rng))
            }
            let s = String(String.UnicodeScalarView(scalars))
            XCTAssertEqual(t.decode(try t.encode(s)), s)
        }
    }

    func testSpecialTokensParsedOnlyWhenAsked() throws {
        let t = try tokenizer()
        let withSpecial = try t.encode("<|im_start|>", parseSpecial: true)
        XCTAssertEqual(withSpecial.count, 1)
        XCTAssertEqual(t.tokens[Int(withSpecial[0])], "<|im_start|>")
        XCTAssertGreaterThan(try t.encode("<|im_start|>", parseSpecial: false).count, 1)
    }

    func testStreamingDecoderHoldsSplitCharacters() throws {
        let t = try tokenizer()
        let text = "a🤖b日本"
        let ids = try t.encode(text)
        var decoder = t.makeStreamingDecoder()
        var streamed = ""
        for id in ids {
            let piece = decoder.append(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"), "streamed a partial character")
            streamed += piece
        }
        streamed += decoder.finish()
        XCTAssertEqual(streamed, text)
        // A lone continuation byte and a truncated sequence do not crash; they decode as U+FFFD.
        func byteToken(_ b: Int) throws -> Int32 {
            Int32(try XCTUnwrap(t.tokens.firstIndex(of: String(ByteLevel.scalar[b]))))
        }
        XCTAssertEqual(t.decode([try byteToken(0x80)]), "\u{FFFD}")
        var d2 = t.makeStreamingDecoder()
        XCTAssertEqual(d2.append(try byteToken(0xE6)), "")
        XCTAssertEqual(d2.finish(), "\u{FFFD}")
        XCTAssertEqual(t.decode([-1, Int32(t.vocabularySize)]), "")
    }
}

extension TokenizerTests {
    func testPasskeyPromptGeneratorReproducesFixture() throws {
        let json = try TestSupport.json("passkey_prompt.json")
        let prompt = PasskeyPrompt()
        XCTAssertEqual(prompt.context, json["context_text"] as? String)
        XCTAssertEqual(prompt.question, json["question_text"] as? String)
        XCTAssertEqual(try tokenizer().encode(prompt.text), try TestSupport.ids("passkey_prompt.json", key: "prompt_ids"))
    }
}
