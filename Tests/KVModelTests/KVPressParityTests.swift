@testable import KVCompress
import XCTest
@testable import KVModel

/// Parity with kvpress 0.5.5 on the fixtures: exact mode, all 1510 passkey ids prefilled in one
/// pass, each layer compressed right after its attention, decoding at original positions.
final class KVPressParityTests: XCTestCase {
    struct Agreement {
        var exact = 0
        var nearTie = 0
        var total = 0
        var jaccardSum = 0.0
        var fraction: Double { Double(exact + nearTie) / Double(max(total, 1)) }
        var meanJaccard: Double { jaccardSum / Double(max(total, 1)) }
    }

    /// Compares our kept sets with kvpress's. A differing head still counts as equal when every
    /// swapped pair is a near tie in the reference scores (when `scores` are given).
    private func compare(_ ours: [[[Int]]], press: String, scores: [Float]? = nil) throws -> Agreement {
        let fixture = try XCTUnwrap(TestSupport.json("kvpress_kept_r050.json")["kept"] as? [String: Any])
        let ref = try XCTUnwrap((fixture[press] as? [String: Any])?["0.5"] as? [[[Int]]], "fixture for \(press)")
        XCTAssertEqual(ours.count, ref.count)
        var a = Agreement()
        for (l, heads) in ref.enumerated() {
            for (m, refKept) in heads.enumerated() {
                let mine = Set(ours[l][m])
                let theirs = Set(refKept)
                a.total += 1
                a.jaccardSum += Double(mine.intersection(theirs).count) / Double(max(mine.union(theirs).count, 1))
                if mine == theirs {
                    a.exact += 1
                } else if let scores, mine.count == theirs.count {
                    // Near-tie swaps only: every position we kept and they did not scores within 1e-5
                    // relative of some position they kept and we did not.
                    let base = (l * ref[0].count + m) * 1510
                    let onlyOurs = mine.subtracting(theirs).map { scores[base + $0] }
                    let onlyTheirs = theirs.subtracting(mine).map { scores[base + $0] }
                    let tol: (Float, Float) -> Bool = { abs($0 - $1) <= 1e-5 * max(abs($0), abs($1)) }
                    if onlyOurs.allSatisfy({ x in onlyTheirs.contains { tol(x, $0) } }) { a.nearTie += 1 }
                }
            }
        }
        return a
    }

    private func run(_ press: String, scores: [Float]? = nil) throws {
        let model = try TestSupport.model(.exact)
        let ids = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        let policy = try KVPolicyCatalog.make(press, budget: .compressionRatio(0.5))
        let session = try LlamaSession(model: model, policy: policy, chunkSize: ids.count)
        var logits = try session.prefill(ids)
        let kept = (0..<model.config.layers).map { session.cache.keptPositions(layer: $0) }
        var answer: [Int32] = []
        while answer.count < 12 {
            let next = logits.withUnsafeBufferPointer { Sampler.argmax($0) }
            answer.append(next)
            if next == model.tokenizer.eosTokenID { break }
            logits = try session.decode(next)
        }
        let a = try compare(kept, press: press, scores: scores)
        print(String(format: "parity %@: %d/%d (layer, head) sets exactly equal, %d more differ only by near-tie swaps "
                     + "(%.1f%% equal), mean Jaccard %.4f", press, a.exact, a.total, a.nearTie, 100 * a.fraction, a.meanJaccard))
        XCTAssertGreaterThanOrEqual(a.fraction, 0.99, "\(press) kept sets")
        // Greedy answer in mode "whole".
        let answers = try XCTUnwrap(TestSupport.json("kvpress_answers_r050.json")["runs"] as? [[String: Any]])
        let expected = try XCTUnwrap(answers.first { ($0["press"] as? String) == press && ($0["mode"] as? String) == "whole" })
        let expectedIDs = try XCTUnwrap(expected["answer_ids"] as? [Int]).map(Int32.init)
        print("parity \(press): answer \(model.tokenizer.decode(answer).debugDescription), "
            + "kvpress \((expected["answer"] as? String ?? "").debugDescription)")
        XCTAssertEqual(answer, expectedIDs)
    }

    func testSnapKV() throws { try run("SnapKVPress", scores: try TestSupport.floats("snapkv_scores_30x3x1510.f32")) }
    func testStreamingLLM() throws { try run("StreamingLLMPress") }
    func testKnorm() throws { try run("KnormPress", scores: try recordedScores(KnormScorer())) }
    func testTOVA() throws { try run("TOVAPress") }
    func testExpectedAttention() throws { try run("ExpectedAttentionPress", scores: try recordedScores(ExpectedAttentionScorer())) }
    func testObservedAttention() throws { try run("ObservedAttentionPress") }

    /// kvpress published raw scores for SnapKV only. For the other presses the near-tie test uses
    /// our own scores of the uncompressed prompt (the exact forward matches transformers to ~1e-5,
    /// so a pair within 1e-5 relative in our scores is a tie at the reference's precision too).
    private func recordedScores<S: KVScorer>(_ scorer: S) throws -> [Float] {
        let model = try TestSupport.model(.exact)
        let ids = try TestSupport.ids("passkey_prompt.json", key: "prompt_ids")
        let recorder = ScoreRecorder(scorer: scorer, box: ScoreBox(layers: model.config.layers))
        let session = try LlamaSession(model: model, policy: recorder, chunkSize: ids.count)
        _ = try session.prefill(ids)
        return recorder.box.layers.flatMap { $0.heads.flatMap { $0 } }
    }
}

/// Collects a scorer's scores per layer without evicting anything.
final class ScoreBox: @unchecked Sendable {
    var layers: [KVScores]
    init(layers: Int) { self.layers = Array(repeating: KVScores(heads: []), count: layers) }
}

struct ScoreRecorder<S: KVScorer>: KVCachePolicy {
    let scorer: S
    let box: ScoreBox
    /// nil: the scorer's scores; otherwise CriticalKV's rescaled scores with this epsilon,
    /// `(score + epsilon) * ||W_o v||_1`.
    var criticalEpsilon: Float?
    func makeState(shape: KVModelShape) -> S.State { scorer.makeState(shape: shape) }
    func afterPrefill(_ context: KVLayerContext, state: inout S.State) throws(KVError) {
        try scorer.observe(context, state: &state)
        var scores = try scorer.scores(context, state: &state)
        if let epsilon = criticalEpsilon {
            let projection = try context.outputProjection()
            for m in scores.heads.indices {
                let norms = projection.valueOutputNorms(context, head: m)
                scores.heads[m] = zip(scores.heads[m], norms).map { ($0 + epsilon) * $1 }
            }
        }
        box.layers[context.layer] = scores
    }
}
