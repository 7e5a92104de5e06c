import Foundation
import XCTest
@testable import KVCompress
@testable import KVModel

/// The shipped head patterns, the calibrations that make them, and DuoAttention / RazorAttention on
/// the default model.
final class HeadPatternTests: XCTestCase {
    /// `<repo>/Patterns/SmolLM2-135M-Instruct`.
    private var patternDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Patterns/SmolLM2-135M-Instruct")
    }

    func testShippedPatternsAreTheRepositoryFiles() throws {
        let dir = patternDirectory.path
        XCTAssertEqual(HeadPatternFiles.defaultModel.duo, try HeadPatternFiles.loadDuo(directory: dir + "/duo"))
        XCTAssertEqual(HeadPatternFiles.defaultModel.razor, try HeadPatternFiles.loadRazor(path: dir + "/razor_heads.json"))
        XCTAssertEqual(ShippedPatterns.duoTSV, try String(contentsOfFile: dir + "/duo/full_attention_heads.tsv", encoding: .utf8))
        XCTAssertEqual(ShippedPatterns.duoConfig, try String(contentsOfFile: dir + "/duo/config.json", encoding: .utf8))
        XCTAssertEqual(ShippedPatterns.razorJSON, try String(contentsOfFile: dir + "/razor_heads.json", encoding: .utf8))
        XCTAssertEqual(HeadPatternFiles.defaultModel.qFilters, try HeadPatternFiles.loadQFilters(path: dir + "/qfilters.tsv"))
        try XCTUnwrap(HeadPatternFiles.defaultModel.qFilters).check(try TestSupport.model(.fast).shape)
        XCTAssertThrowsError(try HeadPatternFiles.loadDuo(directory: dir + "/missing")) { error in
            guard case KVError.io = error else { return XCTFail("\(error)") }
        }
    }

    func testPatternFilesRoundTrip() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvc-patterns-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let patterns = HeadPatternFiles.defaultModel
        try HeadPatternFiles.writeDuo(try XCTUnwrap(patterns.duo), directory: dir, extra: ["model": "x"])
        XCTAssertEqual(try HeadPatternFiles.loadDuo(directory: dir), patterns.duo)
        try HeadPatternFiles.writeRazor(try XCTUnwrap(patterns.razor), path: dir + "/razor.json")
        XCTAssertEqual(try HeadPatternFiles.loadRazor(path: dir + "/razor.json"), patterns.razor)
    }

    func testRazorCalibrationFindsTheShippedInductionHeads() throws {
        // A short run (period 128, 3 repeats: 385 tokens): its strongest induction heads are
        // retrieval heads of the shipped list (made with period 1024, 4 repeats).
        let model = try TestSupport.model(.fast)
        var settings = RazorCalibration()
        settings.period = 128
        settings.repeats = 3
        let quick = try settings.run(model: model)
        let shipped = Set(try XCTUnwrap(HeadPatternFiles.defaultModel.razor).heads)
        let induction = try XCTUnwrap(quick.induction)
        let top = induction.ranking.prefix(3).map { KVHeadIndex(layer: $0.layer, head: $0.head) }
        XCTAssertTrue(top.allSatisfy(shipped.contains), "top induction heads \(top) vs shipped \(shipped.sorted())")
        XCTAssertEqual(quick.heads.count, Set(quick.heads).count)
        XCTAssertLessThanOrEqual(quick.heads.count, 1 + 13)
        settings.period = 1
        XCTAssertThrowsError(try settings.run(model: model))
    }

    func testDuoCalibrationSamplesPointAtTheAnswers() throws {
        let model = try TestSupport.model(.fast)
        let samples = try DuoCalibration().samples(tokenizer: model.tokenizer)
        XCTAssertEqual(samples.count, 4)
        for (s, context) in zip(samples, DuoCalibration().contexts) {
            XCTAssertGreaterThan(s.ids.count, context)
            XCTAssertLessThan(s.ids.count, context + 300)
            // The rows are the positions just before each answer token: the text after row r's
            // token is the answer, and every key's words are answered.
            let answers = model.tokenizer.decode(s.rows.map { s.ids[$0 + 1] })
            XCTAssertEqual(answers.filter { $0 == "." }.count, 4, answers)
            for word in answers.split(whereSeparator: { $0 == " " || $0 == "." }) {
                XCTAssertTrue(DuoCalibration.nato.contains(String(word)), "\(word) in \(answers)")
            }
        }
    }

    func testRetrievalHeadPoliciesOnThePasskeyPrompt() throws {
        // The fixture passkey prompt (1510 tokens), greedy answer, and the cache's bytes.
        let model = try TestSupport.model(.fast)
        let ids = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        let patterns = HeadPatternFiles.defaultModel
        func run(_ policy: any KVCachePolicy) throws -> (answer: String, bytes: Int) {
            let session = try LlamaSession(model: model, policy: policy)
            var logits = try session.prefill(ids)
            let bytes = session.cache.byteCount
            var tokens: [Int32] = []
            for _ in 0..<8 {
                tokens.append(logits.withUnsafeBufferPointer { Sampler.argmax($0) })
                logits = try session.decode(tokens.last!)
            }
            return (model.tokenizer.decode(tokens), bytes)
        }
        let full = try run(FullCache())
        let quarter = full.bytes / 4
        for name in ["DuoAttention", "RazorAttention", "QFilter"] {
            let policy = try KVPolicyCatalog.make(name, budget: .bytes(quarter), patterns: patterns)
            let r = try run(policy)
            print("\(name) at 25 % of the bytes: \(r.answer.debugDescription), \(r.bytes) bytes (full \(full.bytes))")
            XCTAssertLessThanOrEqual(r.bytes, quarter + model.shape.layers * model.shape.kvHeads * KVCache.metadataBytesPerHead)
            XCTAssertGreaterThan(r.bytes, quarter * 8 / 10)
        }
        // DuoAttention by sparsity (half of the heads streaming, Λ-shaped from the first token).
        // Half of the 90 heads keep the 1510 entries, the other half 64 sinks + 255 recent.
        let duo = try run(try DuoAttention(pattern: try XCTUnwrap(patterns.duo), sparsity: 0.5))
        print("DuoAttention sparsity 0.5: \(duo.answer.debugDescription), \(duo.bytes) bytes")
        let cache = try KVCache(shape: model.shape)
        XCTAssertEqual(duo.bytes, 45 * (1510 + 319) * cache.bytesPerEntry + cache.metadataBytes)
        XCTAssertTrue(duo.answer.contains("71432"), duo.answer)
        XCTAssertTrue(full.answer.contains("71432"), full.answer)
        XCTAssertThrowsError(try KVPolicyCatalog.make("DuoAttention", budget: .bytes(quarter))) { error in
            XCTAssertTrue("\(error)".contains("calibrate duo"), "\(error)")
        }
    }
}
