import XCTest
@testable import KVModel
import KVCompress

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

    /// kvpress's FINCH prompt: context, delimiter, question. The delimiter leaves the ids, which
    /// equal the fixture prompt's (kvpress's FINCH run put its delimiter before the question's 11
    /// ids), and the question's length is counted.
    func testFinchDelimiterSplitsContextAndQuestion() throws {
        let json = try TestSupport.json("passkey_prompt.json")
        let context = try XCTUnwrap(json["context_text"] as? String)
        let question = try XCTUnwrap(json["question_text"] as? String)
        let t = try tokenizer()
        let (ids, questionTokens) = try t.encode(context + Finch.delimiter + question, questionAfter: Finch.delimiter)
        XCTAssertEqual(ids, try TestSupport.ids("passkey_prompt.json", key: "prompt_ids"))
        XCTAssertEqual(questionTokens, try XCTUnwrap(json["n_question_tokens"] as? Int))
        let short = try t.encode("Paris is in France.\(Finch.delimiter) Where is Paris?", questionAfter: Finch.delimiter)
        XCTAssertEqual(short.ids, try t.encode("Paris is in France.") + t.encode(" Where is Paris?").dropFirst(t.addsBOS ? 1 : 0))
        XCTAssertEqual(short.questionTokens, try t.encode(" Where is Paris?").count - (t.addsBOS ? 1 : 0))
        for bad in ["no delimiter", "a\(Finch.delimiter)b\(Finch.delimiter)c", "nothing after\(Finch.delimiter)"] {
            XCTAssertThrowsError(try t.encode(bad, questionAfter: Finch.delimiter), bad) { error in
                guard case .invalidParameter(name: "prompt", _, _)? = error as? KVError else { return XCTFail("\(error)") }
            }
        }
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
    func testDecodeValidatingRejectsOutOfVocabularyIDs() throws {
        let t = try tokenizer()
        let ids = try t.encode("Hello, world")
        XCTAssertEqual(try t.decode(validating: ids), "Hello, world")
        XCTAssertEqual(try t.decode(validating: []), "")
        let n = t.vocabularySize
        for (bad, at) in [([Int32(n)], 0), (ids + [-1], ids.count), ([0, Int32.max, -5], 1), ([Int32.min], 0)] {
            XCTAssertThrowsError(try t.decode(validating: bad)) { error in
                XCTAssertEqual(error as? KVError, .tokenization(
                    "token id \(bad[at]) at index \(at) is outside the vocabulary (ids 0..<\(n)); "
                        + "pass ids produced by this model's tokenizer"))
            }
            XCTAssertEqual(t.decode(bad), t.decode(bad.filter { $0 >= 0 && Int($0) < n }))  // lenient: dropped
        }
    }

    /// The heap-based BPE merges exactly as the textbook quadratic loop (lowest rank first, leftmost
    /// on ties, the first rank of a repeated merge), on a vocabulary with many overlapping merges.
    func testBPEMatchesQuadraticReference() throws {
        var rng = GGUFReaderTests.RNG(state: 18)
        let alphabet = ["a", "b", "c"]
        var tokens = ByteLevel.scalar.map { String($0) }
        var merges: [String] = []
        var pool = alphabet
        for _ in 0..<120 {
            let l = pool[rng.int(pool.count)], r = pool[rng.int(pool.count)]
            merges.append("\(l) \(r)")  // repeats allowed: the first rank counts
            if !tokens.contains(l + r) {
                tokens.append(l + r)
                pool.append(l + r)
            }
        }
        let t = try Tokenizer(tokens: tokens, tokenTypes: nil, merges: merges, bos: 0, eos: 0, addBOS: false,
                              splitDigits: false)
        var rank: [String: Int] = [:]
        for (i, m) in merges.enumerated() where rank[m] == nil { rank[m] = i }
        func reference(_ text: String) -> [Int32] {
            var symbols = text.unicodeScalars.map { String($0) }
            while symbols.count > 1 {
                var best: (rank: Int, at: Int)? = nil
                for j in 0..<(symbols.count - 1) {
                    if let r = rank["\(symbols[j]) \(symbols[j + 1])"], best == nil || r < best!.rank { best = (r, j) }
                }
                guard let b = best else { break }
                symbols[b.at] += symbols.remove(at: b.at + 1)
            }
            return symbols.map { Int32(tokens.firstIndex(of: $0)!) }
        }
        for length in [0, 1, 2, 3, 5, 8, 13, 40, 200, 1000] {
            for _ in 0..<(length < 100 ? 30 : 3) {
                let text = String((0..<length).map { _ in Character(alphabet[rng.int(3)]) })
                XCTAssertEqual(try t.encode(text, parseSpecial: false), reference(text), text)
            }
        }
    }

    /// A long piece (one word of 200,000 letters) encodes in time linear-ish in its length: the
    /// quadratic pair rescan took minutes here; round trip exact.
    func testLongPieceEncodesQuickly() throws {
        let t = try tokenizer()
        for text in [String(repeating: "a", count: 200_000), String(repeating: "ab", count: 100_000),
                     String(repeating: " ", count: 200_000) + "x", String(repeating: "日本", count: 50_000)] {
            let clock = ContinuousClock()
            let start = clock.now
            let ids = try t.encode(text)
            let elapsed = clock.now - start
            XCTAssertEqual(t.decode(ids), text)
            XCTAssertLessThan(elapsed, .seconds(10), "\(text.prefix(4).debugDescription)... (\(text.utf8.count) bytes)")
        }
    }

    func testPasskeyPromptGeneratorReproducesFixture() throws {
        let json = try TestSupport.json("passkey_prompt.json")
        let prompt = PasskeyPrompt()
        XCTAssertEqual(prompt.context, json["context_text"] as? String)
        XCTAssertEqual(prompt.question, json["question_text"] as? String)
        XCTAssertEqual(try tokenizer().encode(prompt.text), try TestSupport.ids("passkey_prompt.json", key: "prompt_ids"))
    }
}
