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

    /// With re-positioning the kept keys are those RoPE-rotated to in-cache slots and the host
    /// continues at nextPosition.
    func testStreamingLLMRepositioning() throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 2, kvHeads: 1, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 30, seed: 3)
        let cache = p.makeCache()
        let c = try p.prefill(StreamingLLM(budget: .tokens(10), sinks: 2, repositionKeys: true), cache: cache, prompt: 25)
        XCTAssertEqual(cache.positions(layer: 0, head: 0), (0..<10).map { Int32($0) })
        // Row 2 held token 17 (kept recent 17..<25): rotated by 2 - 17.
        var want = Array(p.keys[0][(17 * 32)..<(18 * 32)])
        let delta: Int32 = 2 - 17
        for i in 0..<16 {
            let ang = Double(Float(delta) * shape.ropeInverseFrequencies[i])
            let a = Double(want[i]), b = Double(want[i + 16])
            want[i] = Float(a * cos(ang) - b * sin(ang))
            want[i + 16] = Float(b * cos(ang) + a * sin(ang))
        }
        let got = cache.key(layer: 0, head: 0, row: 2)
        for i in 0..<32 { XCTAssertEqual(got[i], want[i], accuracy: 1e-4) }
        XCTAssertEqual(cache.nextPosition(layer: 0), 10)
        try p.decode(c, token: 25, position: Int32(cache.nextPosition(layer: 0)))
        XCTAssertEqual(cache.positions(layer: 0, head: 0), (0..<10).map { Int32($0) })
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
        let p = SyntheticPrompt(shape: shape, length: 50, seed: 7)
        let cache = p.makeCache()
        let c = try p.prefill(TOVA(compressionRatio: 0.5, schedule: .prefillAndDecode), cache: cache, prompt: 40)
        for t in 40..<50 {
            try p.decode(c, token: t)
            for l in 0..<2 {
                let kept = cache.keptPositions(layer: l)
                XCTAssertEqual(kept[0].count, 20)
                XCTAssertEqual(kept[0], kept[1])
                XCTAssertTrue(kept[0].contains(t))  // the newest token is always kept
            }
        }
        // Prefill-only schedule: the cache grows while decoding.
        let grow = p.makeCache()
        let g = try p.prefill(TOVA(compressionRatio: 0.5), cache: grow, prompt: 40)
        for t in 40..<50 { try p.decode(g, token: t) }
        XCTAssertEqual(grow.count(layer: 0, head: 0), 30)
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
        cache.removeAll()
        try p.prefill(c, prompt: 60)
        XCTAssertEqual(cache.count(layer: 1, head: 1), 30)
    }

    func testRollingPoliciesHoldCapacityAcrossLaterPrompts() throws {
        let p = SyntheticPrompt(shape: shape, length: 70, seed: 16)
        for policy in [try StreamingLLM(compressionRatio: 0.5) as any KVCachePolicy,
                       try TOVA(compressionRatio: 0.5, schedule: .prefillAndDecode),
                       try H2O(compressionRatio: 0.5)] {
            let cache = p.makeCache()
            let c = try p.prefill(policy, cache: cache, prompt: 60)
            XCTAssertEqual(cache.count(layer: 0, head: 0), 30, policy.name)
            try p.prefill(c, chunk: 4, prompt: 70, from: 60)
            for l in 0..<2 { for m in 0..<2 { XCTAssertEqual(cache.count(layer: l, head: m), 30, policy.name) } }
            XCTAssertTrue(cache.keptPositions(layer: 0)[0].contains(69), policy.name)
        }
    }
}
