import Foundation
import XCTest
@testable import KVCompress

final class PolicyTests: XCTestCase {
    func testStreamingLLMKvpressSetsAtL1510() throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 2, kvHeads: 1, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 1510, seed: 1)
        for (r, firstRecent) in [(0.5, 759), (0.8, 1213)] {
            let cache = p.makeCache(.f16)
            try p.prefill(StreamingLLM(compressionRatio: r), cache: cache)
            XCTAssertEqual(cache.keptPositions(layer: 0)[0], Array(0...3) + Array(firstRecent...1509), "r = \(r)")
        }
    }

    func testStreamingLLMRollsDuringDecode() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 60, seed: 2)
        let cache = p.makeCache()
        let c = try p.prefill(StreamingLLM(budget: .tokens(20), sinks: 4), cache: cache, prompt: 40)
        XCTAssertEqual(cache.keptPositions(layer: 1)[1], Array(0..<4) + Array(24..<40))
        for t in 40..<60 { try p.decode(c, token: t) }
        for l in 0..<2 {
            for m in 0..<2 { XCTAssertEqual(cache.keptPositions(layer: l)[m], Array(0..<4) + Array(44..<60)) }
        }
    }

    /// With re-positioning the kept entries take consecutive positions ending just before the next
    /// token (only the sinks move: the window keeps its positions), keys RoPE-rotated by the move;
    /// new tokens take the cache's next position; when the next position would reach the context
    /// length every entry moves down to start at 0.
    func testStreamingLLMRepositioning() throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 2, kvHeads: 1, headDim: 32, contextLength: 40)
        let p = SyntheticPrompt(shape: shape, length: 50, seed: 3)
        let cache = p.makeCache()
        let c = try p.prefill(StreamingLLM(budget: .tokens(10), sinks: 2, repositionKeys: true), cache: cache, prompt: 25)
        // Kept: tokens 0, 1 (sinks) and 17..<25, at positions 15..<25.
        func check(tokens: [Int], positions: Range<Int>, _ message: String) {
            XCTAssertEqual(cache.positions(layer: 0, head: 0), positions.map { Int32($0) }, message)
            for (row, (t, pos)) in zip(tokens, positions).enumerated() {
                // The synthetic keys are appended unrotated at the step's position: token t < 40 at
                // position t, tokens after the move to 0 at t - 31.
                let appendedAt = t >= 40 ? t - 31 : t
                let want = rotate(Array(p.keys[0][(t * 32)..<(t * 32 + 32)]), by: pos - appendedAt, shape: shape)
                let got = cache.key(layer: 0, head: 0, row: row)
                for i in 0..<32 { XCTAssertEqual(Double(got[i]), want[i], accuracy: 1e-4, "\(message) row \(row) dim \(i)") }
            }
        }
        check(tokens: [0, 1] + Array(17..<25), positions: 15..<25, "after the prompt")
        XCTAssertEqual(cache.nextPosition, 25)
        // Each decode step evicts the oldest window entry before the token is appended.
        try p.decode(c, token: 25)
        check(tokens: [0, 1] + Array(18..<26), positions: 16..<26, "after one decode step")
        for t in 26..<40 { try p.decode(c, token: t) }
        check(tokens: [0, 1] + Array(32..<40), positions: 30..<40, "at position 39")
        // Token 40 would take position 40 = the context length: everything moves to 0 first.
        try p.decode(c, token: 40)
        check(tokens: [0, 1] + Array(33..<41), positions: 0..<10, "after the move to 0")
        XCTAssertEqual(cache.nextPosition, 10)
        try p.decode(c, token: 41)
        check(tokens: [0, 1] + Array(34..<42), positions: 1..<11, "after the move to 0 and one more token")
    }

    /// A ratio-configured rolling window keeps at least `KVBudget.minimumRollingCapacity` entries:
    /// a 5-token prompt at ratio 0.5 keeps 2, then the window grows to 64 instead of evicting every
    /// new token.
    func testStreamingLLMRatioWindowHasAMinimumOnShortPrompts() throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 2, kvHeads: 1, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 105, seed: 13)
        let cache = p.makeCache()
        let c = try p.prefill(StreamingLLM(compressionRatio: 0.5), cache: cache, prompt: 5)
        XCTAssertEqual(cache.keptPositions(layer: 0)[0], [0, 1])   // kvpress: max(1, Int(5 * 0.5)) = 2
        for t in 5..<30 { try p.decode(c, token: t) }
        XCTAssertEqual(cache.keptPositions(layer: 0)[0], [0, 1] + Array(5..<30))
        for t in 30..<105 { try p.decode(c, token: t) }
        XCTAssertEqual(KVBudget.minimumRollingCapacity, 64)
        // The sinks are the first four entries the cache holds: tokens 0, 1, 5 and 6.
        XCTAssertEqual(cache.keptPositions(layer: 0)[0], [0, 1, 5, 6] + Array(45..<105))
    }

    /// By sizes: never more than sinks + window entries, before or after a step, for prompt chunks
    /// and decode steps; a chunk longer than the window leaves sinks + chunk until the chunk ends.
    func testStreamingLLMBySizesHoldsItsCapacityAtEveryMoment() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 2, kvHeads: 1, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 200, seed: 17)
        let policy = try StreamingLLM(sinks: 4, window: 28)
        XCTAssertEqual(policy.window, 28)
        XCTAssertThrowsError(try StreamingLLM(sinks: 4, window: 0))
        XCTAssertThrowsError(try StreamingLLM(sinks: -1, window: 10))
        let cache = p.makeCache()
        cache.resetPeakByteCount()
        let c = try p.prefill(policy, cache: cache, chunk: 8, prompt: 100)
        XCTAssertEqual(cache.peakByteCount, 2 * 32 * cache.bytesPerEntry + cache.metadataBytes)
        XCTAssertEqual(cache.keptPositions(layer: 1)[0], Array(0..<4) + Array(72..<100))
        for t in 100..<150 { try p.decode(c, token: t) }
        XCTAssertEqual(cache.peakByteCount, 2 * 32 * cache.bytesPerEntry + cache.metadataBytes)
        XCTAssertEqual(cache.keptPositions(layer: 0)[0], Array(0..<4) + Array(122..<150))
        // A 40-token chunk does not fit beside the sinks in 32: sinks + chunk (44) until the layer's
        // attention ran, then cut back; layer 0 is back at 32 when layer 1 holds 44.
        try p.prefill(c, chunk: 40, prompt: 190, from: 150)
        XCTAssertEqual(cache.peakByteCount, (32 + 44) * cache.bytesPerEntry + cache.metadataBytes)
        XCTAssertEqual(cache.keptPositions(layer: 0)[0], Array(0..<4) + Array(162..<190))
    }

    func testPyramidKVUsesLayerBudgetsOverSnapKVScores() throws {
        let shape = SyntheticPrompt.shape(layers: 4, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 200, seed: 4)
        let policy = try PyramidKV(compressionRatio: 0.5, window: 8)
        let cache = p.makeCache()
        try p.prefill(policy, cache: cache)
        let snapScorer = try SnapKVScorer(window: 8)
        let full = p.makeCache()
        p.append(0..<200, to: full)
        for l in 0..<4 {
            let n = policy.selector.layerBudget(layer: l, layers: 4, length: 200, cache: cache)
            var st = snapScorer.makeState(shape: shape)
            let scores = withContext(p, cache: full, layer: l) { ctx -> KVScores in
                snapScorer.observe(ctx, state: &st)
                return snapScorer.scores(ctx, state: &st)
            }
            for m in 0..<2 {
                XCTAssertEqual(cache.count(layer: l, head: m), n)
                XCTAssertEqual(cache.keptPositions(layer: l)[m], referenceTopK(scores[m].map(Double.init), n))
            }
        }
        XCTAssertGreaterThan(cache.count(layer: 0, head: 0), cache.count(layer: 3, head: 0))
    }

    /// AdaKV against a direct transcription of kvpress's procedure (safeguard then global top).
    func testAdaKVHeadAdaptiveSelection() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 6, kvHeads: 3, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 100, seed: 5)
        let cache = p.makeCache()
        try p.prefill(AdaKV(scorer: KnormScorer(), budget: .compressionRatio(0.75), alpha: 0.2), cache: cache)
        let n = 25, safe = 5
        for l in 0..<2 {
            var s = (0..<3).map { m in (0..<100).map { -norm(p.key(l, $0, m)) } }
            for m in 0..<3 { for j in referenceTopK(s[m], safe) { s[m][j] = .infinity } }
            let flat = (0..<3).flatMap { m in (0..<100).map { (m, $0) } }
            let top = flat.sorted { s[$0.0][$0.1] > s[$1.0][$1.1] }.prefix(3 * n)
            let kept = cache.keptPositions(layer: l)
            XCTAssertEqual(kept.map(\.count).reduce(0, +), 3 * n)
            for m in 0..<3 {
                XCTAssertEqual(kept[m], top.filter { $0.0 == m }.map(\.1).sorted())
                XCTAssertGreaterThanOrEqual(kept[m].count, safe)
            }
        }
    }

    /// Accumulated-attention policies ask the host for attention column sums; wrappers pass their
    /// scorer's need on; the others ask for nothing.
    func testWhichPoliciesNeedAttentionColumnSums() throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 8, seed: 1)
        func needs(_ policy: any KVCachePolicy) throws -> Bool {
            let compressor = try KVCompressor(policy: policy, cache: p.makeCache(), shape: shape)
            XCTAssertEqual(compressor.needsAttentionColumnSums, policy.needsAttentionColumnSums, policy.name)
            return compressor.needsAttentionColumnSums
        }
        let r = KVBudget.compressionRatio(0.5)
        XCTAssertTrue(try needs(H2O(budget: r)))
        XCTAssertTrue(try needs(ObservedAttention(budget: r)))
        XCTAssertTrue(try needs(AdaKV(scorer: ObservedAttentionScorer(), budget: r)))
        XCTAssertTrue(try needs(ScoredPolicy(scorer: ObservedAttentionScorer(), selector: UniformSelector(budget: r))))
        for name in ["Full", "StreamingLLM", "SnapKV", "PyramidKV", "TOVA", "Knorm", "ExpectedAttention", "KeyDiff", "AdaKV"] {
            XCTAssertFalse(try needs(KVPolicyCatalog.make(name, budget: r)), name)
        }
    }

    /// `WRAPPER:INNER` names build a wrapper around any scorer, by library or kvpress names.
    func testCatalogWrapsAnyScorer() throws {
        let e = try KVPolicyCatalog.entry(named: "chunkkvpress:tovapress")
        XCTAssertEqual(e.name, "ChunkKV:TOVA")
        XCTAssertEqual(e.kvpressName, "ChunkKVPress(TOVAPress)")
        XCTAssertEqual(String(describing: type(of: try e.make(.compressionRatio(0.5), .prefill))), "ChunkKV<TOVAScorer>")
        XCTAssertEqual(String(describing: type(of: try KVPolicyCatalog.make("AdaKV:ExpectedAttention", budget: .compressionRatio(0.5)))),
                       "AdaKV<ExpectedAttentionScorer>")
        for wrapper in KVPolicyCatalog.wrappers {
            for scorer in KVPolicyCatalog.scorers {
                let name = wrapper.parameter == nil ? "\(wrapper.name):\(scorer.name)" : "\(wrapper.name)@-1.5:\(scorer.name)"
                if ["KVzap", "ExpectedAttentionStats"].contains(scorer.name) || wrapper.name == "LUKV" {
                    // a trained or calibrated artifact is needed: the error names it and says how to get one
                    XCTAssertThrowsError(try KVPolicyCatalog.make(name, budget: .tokens(64)), name) { error in
                        guard case KVError.invalidParameter("pattern", _, let expected) = error else { return XCTFail("\(error)") }
                        XCTAssertTrue(expected.contains("kvcompress"), expected)
                    }
                } else {
                    XCTAssertNoThrow(try KVPolicyCatalog.make(name, budget: .tokens(64)), name)
                }
            }
        }
        XCTAssertEqual(try KVPolicyCatalog.entry(named: "dmspress@-4:knormpress").name, "DMS@-4:Knorm")
        XCTAssertEqual(try KVPolicyCatalog.entry(named: "DMS@0.25:TOVA").kvpressName, "DMSPress(TOVAPress)")
        XCTAssertFalse(try KVPolicyCatalog.entry(named: "DMS@0.25:TOVA").holdsBudget)
        for bad in ["AdaKV:Nope", "Nope:SnapKV", "AdaKV:", ":SnapKV", "DMS:Knorm", "DMS@x:Knorm", "DMS@inf:Knorm", "AdaKV@2:SnapKV"] {
            XCTAssertThrowsError(try KVPolicyCatalog.entry(named: bad), bad) { error in
                guard case KVError.invalidParameter(_, _, let expected) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(expected.contains(":INNER"), expected)
            }
        }
    }

    func testH2OHeavyHittersPlusRecentAcrossDecode() throws {
        for fused in [false, true] { try checkH2O(columnSums: fused) }
    }

    func checkH2O(columnSums fused: Bool) throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 48, seed: 6)
        let cache = p.makeCache()
        let c = try p.prefill(H2O(budget: .tokens(16), recentFraction: 0.25), cache: cache, prompt: 40, columnSums: fused)
        // Reference after the prompt: accumulated (unnormalized, group-mean) attention of all 40 queries.
        func reference() -> [[Int]] {
            (0..<2).map { m in
                var acc = [Double](repeating: 0, count: 40)
                for h in (2 * m)..<(2 * m + 2) {
                    for t in 0..<40 { let a = p.attention(0, h: h, t: t); for j in 0..<40 { acc[j] += a[j] / 2 } }
                }
                let rows = Array(0..<40)
                let recent = Array(rows.suffix(4))
                let older = Array(rows.dropLast(4))
                let heavy = older.sorted { acc[$0] != acc[$1] ? acc[$0] > acc[$1] : $0 > $1 }.prefix(12)
                return (Array(heavy) + recent).sorted()
            }
        }
        XCTAssertEqual(cache.keptPositions(layer: 0), reference())
        for t in 40..<48 { try p.decode(c, token: t) }
        for m in 0..<2 {
            let kept = cache.keptPositions(layer: 0)[m]
            XCTAssertEqual(kept.count, 16)
            XCTAssertEqual(Array(kept.suffix(4)), [44, 45, 46, 47])
        }
    }

    func testTOVAEvictsEveryStepWhenScheduled() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 150, seed: 7)
        let cache = p.makeCache()
        let c = try p.prefill(TOVA(compressionRatio: 0.5, schedule: .prefillAndDecode), cache: cache, prompt: 140)
        for t in 140..<150 {
            try p.decode(c, token: t)
            for l in 0..<2 {
                let kept = cache.keptPositions(layer: l)
                XCTAssertEqual(kept[0].count, 70)
                XCTAssertEqual(kept[0], kept[1])
                XCTAssertTrue(kept[0].contains(t))  // the newest token is always kept
            }
        }
        // Prefill-only schedule: the cache grows while decoding.
        let grow = p.makeCache()
        let g = try p.prefill(TOVA(compressionRatio: 0.5), cache: grow, prompt: 140)
        for t in 140..<150 { try p.decode(g, token: t) }
        XCTAssertEqual(grow.count(layer: 0, head: 0), 80)
    }

    func testFullCacheKeepsEverythingAndNewCombinationsAreOneLine() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 64, seed: 8)
        let full = p.makeCache()
        try p.prefill(FullCache(), cache: full)
        XCTAssertEqual(full.totalEntries, 2 * 2 * 64)
        // TOVA scores with pyramid budgets, Knorm under AdaKV: a line each.
        let combo = ScoredPolicy(scorer: TOVAScorer(), selector: try PyramidSelector(budget: .compressionRatio(0.5), window: 4))
        let c1 = p.makeCache()
        try p.prefill(combo, cache: c1)
        XCTAssertLessThan(c1.totalEntries, full.totalEntries)
        let c2 = p.makeCache()
        try p.prefill(AdaKV(scorer: try ExpectedAttentionScorer(epsilon: 0.01), budget: .compressionRatio(0.5)), cache: c2)
        XCTAssertEqual(c2.totalEntries, 2 * 2 * 32)
        let c3 = p.makeCache()
        try p.prefill(AdaKV(scorer: try SnapKVScorer(window: 8), budget: .compressionRatio(0.5)), cache: c3)
        XCTAssertEqual(c3.totalEntries, 2 * 2 * 32)
    }
}

final class MultiPromptTests: XCTestCase {
    let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)

    /// kvpress "context" mode: the context is compressed, a question prefilled afterwards is not.
    func testPrefillScheduleCompressesOnlyTheFirstPrompt() throws {
        let p = SyntheticPrompt(shape: shape, length: 70, seed: 15)
        let cache = p.makeCache()
        let c = try p.prefill(SnapKV(compressionRatio: 0.5, window: 8), cache: cache, prompt: 60)
        XCTAssertEqual(cache.count(layer: 0, head: 0), 30)
        try p.prefill(c, chunk: 4, prompt: 70, from: 60)   // the question, in chunks
        XCTAssertEqual(cache.count(layer: 0, head: 0), 40)
        XCTAssertEqual(Array(cache.keptPositions(layer: 1)[1].suffix(10)), Array(60..<70))
        // A new sequence (first chunk again) compresses again.
        c.reset()
        try p.prefill(c, prompt: 60)
        XCTAssertEqual(cache.count(layer: 1, head: 1), 30)
    }

    func testRollingPoliciesHoldCapacityAcrossLaterPrompts() throws {
        let p = SyntheticPrompt(shape: shape, length: 210, seed: 16)
        for policy in [try StreamingLLM(compressionRatio: 0.5) as any KVCachePolicy,
                       try TOVA(compressionRatio: 0.5, schedule: .prefillAndDecode),
                       try H2O(compressionRatio: 0.5)] {
            let cache = p.makeCache()
            let c = try p.prefill(policy, cache: cache, prompt: 200)
            XCTAssertEqual(cache.count(layer: 0, head: 0), 100, policy.name)
            try p.prefill(c, chunk: 4, prompt: 210, from: 200)
            for l in 0..<2 { for m in 0..<2 { XCTAssertEqual(cache.count(layer: l, head: m), 100, policy.name) } }
            XCTAssertTrue(cache.keptPositions(layer: 0)[0].contains(209), policy.name)
        }
    }

    /// PyramidKV with a fixed budget and a rolling schedule holds each layer's pyramid share of the
    /// budget across later prompts (not what the first chunk happened to keep).
    func testPyramidKVHoldsItsLayerBudgetsWhenRolling() throws {
        let p = SyntheticPrompt(shape: SyntheticPrompt.shape(layers: 4, heads: 4, kvHeads: 2, headDim: 32), length: 600, seed: 20)
        // Mean 200 > beta x window = 160, so the budgets really form a pyramid.
        let policy = try PyramidKV(budget: .tokens(200), window: 8, schedule: .prefillAndDecode)
        let cache = p.makeCache()
        let c = try p.prefill(policy, cache: cache, prompt: 50)   // the first prompt is shorter than the budget
        try p.prefill(c, chunk: 50, prompt: 600, from: 50)
        let counts = (0..<4).map { cache.count(layer: $0, head: 0) }
        XCTAssertEqual(counts, (0..<4).map { policy.selector.layerBudget(layer: $0, layers: 4, length: Int(Int32.max), cache: cache) })
        XCTAssertGreaterThan(counts[0], counts[3])
        XCTAssertEqual(Double(counts.reduce(0, +)) / 4, 200, accuracy: 2)
    }

    /// Every rolling policy configured by a ratio holds at least the minimum capacity on a short
    /// prompt.
    func testRollingRatioPoliciesKeepTheMinimumCapacity() throws {
        let p = SyntheticPrompt(shape: shape, length: 110, seed: 18)
        for policy in [try StreamingLLM(compressionRatio: 0.5) as any KVCachePolicy,
                       try TOVA(compressionRatio: 0.5, schedule: .prefillAndDecode),
                       try H2O(compressionRatio: 0.5)] {
            let cache = p.makeCache()
            let c = try p.prefill(policy, cache: cache, prompt: 10)
            XCTAssertEqual(cache.count(layer: 0, head: 0), 5, policy.name)
            for t in 10..<110 { try p.decode(c, token: t) }
            for l in 0..<2 {
                for m in 0..<2 { XCTAssertEqual(cache.count(layer: l, head: m), KVBudget.minimumRollingCapacity, policy.name) }
            }
            XCTAssertTrue(cache.keptPositions(layer: 1)[1].contains(109), policy.name)
        }
    }
}

/// `x` (a post-RoPE key of the synthetic shape) rotated by `delta` positions, in double precision.
func rotate(_ x: [Float], by delta: Int, shape: KVModelShape) -> [Double] {
    let rope = shape.rope!
    let d = shape.headDim
    var y = x.map(Double.init)
    for i in 0..<(d / 2) {
        let (a, b) = rope.pairing.pair(i, headDim: d)
        let angle = Double(Float(delta) * rope.inverseFrequencies[i])
        y[a] = Double(x[a]) * cos(angle) - Double(x[b]) * sin(angle)
        y[b] = Double(x[b]) * cos(angle) + Double(x[a]) * sin(angle)
    }
    return y
}
