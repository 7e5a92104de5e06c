import XCTest
@testable import KVCompress

final class SelectionTests: XCTestCase {
    func testKvpressKeptCountRounding() {
        XCTAssertEqual(KVBudget.keptCount(length: 1510, compressionRatio: 0.8), 301)
        XCTAssertEqual(KVBudget.keptCount(length: 1510, compressionRatio: 0.5), 755)
        XCTAssertEqual(KVBudget.keptCount(length: 3, compressionRatio: 0.9), 1)  // floor of 1
        XCTAssertEqual(KVBudget.keptCount(length: 10, compressionRatio: 0.0), 10)
        XCTAssertEqual(KVBudget.keptCount(length: 10, compressionRatio: 0.7), Int(10 * (1 - 0.7)))  // 2.9999... -> 2
    }

    func testPyramidBudgets() throws {
        let cache = try KVCache(layers: 1, kvHeads: 1, headDim: 32)
        let r08 = try PyramidSelector(budget: .compressionRatio(0.8))
        let r05 = try PyramidSelector(budget: .compressionRatio(0.5))
        for l in [0, 15, 29] {
            // Uniform fallback with round(): 302 where SnapKV keeps 301.
            XCTAssertEqual(r08.layerBudget(layer: l, layers: 30, length: 1510, cache: cache), 302)
        }
        // r = 0.5, L = 1510: max clamps to L - w = 1446, min = 2 * 755 - 1446 = 64 = w, so the
        // condition `min >= w` holds exactly and kvpress builds a pyramid 1446 ... 64
        // (layer 15: round(1446 - 15 * 1382 / 29) = round(731.17) = 731).
        XCTAssertEqual(r05.layerBudget(layer: 0, layers: 30, length: 1510, cache: cache), 1446)
        XCTAssertEqual(r05.layerBudget(layer: 15, layers: 30, length: 1510, cache: cache), 731)
        XCTAssertEqual(r05.layerBudget(layer: 29, layers: 30, length: 1510, cache: cache), 64)
        // Slightly above 0.5 the minimum drops below the window: uniform fallback round(L (1 - r)).
        let r051 = try PyramidSelector(budget: .compressionRatio(0.51))
        XCTAssertEqual(r051.layerBudget(layer: 0, layers: 30, length: 1510, cache: cache),
                       Int((1510 * (1 - 0.51)).rounded(.toNearestOrEven)))
        // Real pyramids: the reference formula in double, written out here.
        for (length, r) in [(10000, 0.5), (4000, 0.3), (3000, 0.45)] {
            let sel = try PyramidSelector(budget: .compressionRatio(r))
            let L = Double(length), w = 64.0, beta = 20.0, NL = 30.0
            let mcp = w + L * (1 - r)
            var minN = (mcp - w) / beta, maxN = 2 * (mcp - w) - minN
            if maxN >= L - w { maxN = L - w; minN = 2 * (mcp - w) - maxN }
            XCTAssertTrue(L >= maxN && maxN >= minN && minN >= w)
            var total = 0
            for l in 0..<30 {
                let want = Int((maxN - Double(l) * (maxN - minN) / (NL - 1)).rounded(.toNearestOrEven))
                let got = sel.layerBudget(layer: l, layers: 30, length: length, cache: cache)
                XCTAssertEqual(got, want)
                total += got
            }
            XCTAssertGreaterThan(sel.layerBudget(layer: 0, layers: 30, length: length, cache: cache),
                                 sel.layerBudget(layer: 29, layers: 30, length: length, cache: cache))
            XCTAssertEqual(Double(total) / 30, L * (1 - r), accuracy: 1)
            // One layer: steps = 0.
            XCTAssertEqual(sel.layerBudget(layer: 0, layers: 1, length: length, cache: cache),
                           Int(maxN.rounded(.toNearestOrEven)))
        }
    }

    func testTieBreakPrefersLargerPosition() throws {
        let kept = try KVSelection.topK(scores: [1, 5, 1, 1, 5, .nan], positions: [0, 1, 2, 3, 4, 5], k: 3)
        XCTAssertEqual(kept, [1, 3, 4])
        XCTAssertNil(try KVSelection.topK(scores: [1, 2], positions: [0, 1], k: 2))
    }

    func testParameterValidation() {
        func invalid(_ name: String, _ body: () throws -> Void, line: UInt = #line) {
            XCTAssertThrowsError(try body(), line: line) { e in
                guard case let KVError.invalidParameter(n, _, _) = e else { return XCTFail("\(e)", line: line) }
                XCTAssertEqual(n, name, line: line)
            }
        }
        invalid("compressionRatio") { _ = try SnapKV(compressionRatio: 1.0) }
        invalid("compressionRatio") { _ = try Knorm(compressionRatio: -0.1) }
        invalid("compressionRatio") { _ = try TOVA(compressionRatio: .nan) }
        invalid("tokens") { _ = try StreamingLLM(budget: .tokens(0)) }
        invalid("bytes") { _ = try H2O(budget: .bytes(0)) }
        invalid("window") { _ = try SnapKV(compressionRatio: 0.5, window: 0) }
        invalid("kernelSize") { _ = try SnapKV(compressionRatio: 0.5, kernelSize: 4) }
        invalid("kernelSize") { _ = try PyramidKV(compressionRatio: 0.5, kernelSize: 0) }
        invalid("beta") { _ = try PyramidKV(compressionRatio: 0.5, beta: 0.5) }
        invalid("alpha") { _ = try AdaKV(scorer: KnormScorer(), budget: .compressionRatio(0.5), alpha: 1.5) }
        invalid("sinks") { _ = try StreamingLLM(compressionRatio: 0.5, sinks: -1) }
        invalid("recentFraction") { _ = try H2O(compressionRatio: 0.5, recentFraction: 2) }
        invalid("futurePositions") { _ = try ExpectedAttention(budget: .compressionRatio(0.5), futurePositions: 0) }
        invalid("epsilon") { _ = try ExpectedAttentionScorer(epsilon: -1) }
        invalid("blockSize") { _ = try ObservedAttention(budget: .compressionRatio(0.5), blockSize: 0) }
        XCTAssertNoThrow(try SnapKV(compressionRatio: 0))
    }

    func testBudgetsAsTokensAndBytes() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 60, seed: 5)
        let c1 = p.makeCache(.f16)
        try p.prefill(Knorm(budget: .tokens(25)), cache: c1)
        XCTAssertEqual(c1.totalEntries, 2 * 2 * 25)
        let c2 = p.makeCache(.f16)
        let perEntry = c2.bytesPerEntry
        try p.prefill(Knorm(budget: .bytes(4 * 17 * perEntry + 5)), cache: c2)
        XCTAssertEqual(c2.totalEntries, 4 * 17)
        XCTAssertLessThanOrEqual(c2.byteCount - c2.metadataBytes, 4 * 17 * perEntry + 5)
    }
}

final class TopKPathTests: XCTestCase {
    /// The linear-scan path (few rows dropped) and the sorting path agree with a reference ranking,
    /// ties included.
    func testTopKPathsAgreeWithReference() throws {
        var rng = SplitMix64(seed: 31)
        for n in [1, 2, 9, 40, 300] {
            for drop in [0, 1, 3, 8, 9, n / 2] where drop <= n {
                let scores = (0..<n).map { _ in Float(Int.random(in: 0..<max(2, n / 4), using: &rng)) }
                let positions = (0..<n).map { Int32($0 * 2) }
                let k = n - drop
                let got = try KVSelection.topK(scores: scores, positions: positions, k: k)
                let want = Array((0..<n).sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 > $1 }.prefix(k)).sorted()
                if drop == 0 { XCTAssertNil(got) } else { XCTAssertEqual(got, want, "n \(n) drop \(drop)") }
            }
        }
    }
}
