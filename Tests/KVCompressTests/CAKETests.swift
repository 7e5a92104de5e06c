import Foundation
import XCTest
@testable import KVCompress

/// CAKE's layer budgets (cascading = one allocation up to rounding, bounded by the prompt, summing to
/// the total) and its indicator against a double-precision reference.
final class CAKETests: XCTestCase {
    func testAllocationByHand() {
        XCTAssertEqual(CAKE.allocate(preferences: [1, 2, 1], total: 100, cap: 1000), [25, 50, 25])
        // The middle layer is capped at 40; its excess (10) goes to the others.
        XCTAssertEqual(CAKE.allocate(preferences: [1, 2, 1], total: 100, cap: 40), [30, 40, 30])
        // Truncation leaves 1: the first layer below the cap takes it.
        XCTAssertEqual(CAKE.allocate(preferences: [1, 1, 1], total: 10, cap: 100), [4, 3, 3])
        // More budget than the layers can hold: every layer keeps everything.
        XCTAssertEqual(CAKE.allocate(preferences: [5, 1], total: 100, cap: 20), [20, 20])
        XCTAssertEqual(CAKE.allocate(preferences: [0, 0], total: 9, cap: 100), [5, 4])
        var rng = SplitMix64(seed: 1)
        for _ in 0..<200 {
            let n = Int.random(in: 1...12, using: &rng)
            let prefs = (0..<n).map { _ in Double.random(in: 0...3, using: &rng) }
            let total = Int.random(in: 0...5000, using: &rng), cap = Int.random(in: 1...800, using: &rng)
            let shares = CAKE.allocate(preferences: prefs, total: total, cap: cap)
            XCTAssertEqual(shares.reduce(0, +), min(total, cap * n))
            XCTAssertTrue(shares.allSatisfy { $0 >= 0 && $0 <= cap }, "\(shares)")
        }
    }

    /// Preference and indicator of layer `l` in double precision, from the uncompressed prompt.
    private func reference(_ p: SyntheticPrompt, layer l: Int, window w: Int, gamma: Double) -> (Double, [[Double]]) {
        let n = p.length - w
        let g = p.shape.groupSize
        var dispersion = 0.0, shift = 0.0
        var indicator: [[Double]] = []
        for m in 0..<p.shape.kvHeads {
            var head = [Double](repeating: 0, count: n)
            for h in (m * g)..<((m + 1) * g) {
                let rows = (n..<p.length).map { p.attention(l, h: h, t: $0) }
                var raw = [Double](repeating: 0, count: n)
                for j in 0..<n {
                    let a = rows.map { $0[j] }
                    let mean = a.reduce(0, +) / Double(w)
                    let variance = a.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(w - 1)
                    dispersion -= a.reduce(0) { $0 + $1 * log($1 + 1e-10) }
                    shift += variance
                    raw[j] = mean + gamma * variance
                }
                for j in 0..<n { head[j] += (max(0, j - 2)...min(n - 1, j + 2)).reduce(0) { $0 + raw[$1] } / 5 / Double(g) }
            }
            indicator.append(head)
        }
        return (dispersion * shift, indicator)
    }

    func testCascadingKeepsTheReferenceTopEntriesWithinOneAllocation() throws {
        let shape = SyntheticPrompt.shape(layers: 4, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 300, seed: 3)
        let w = 16
        let cache = p.makeCache()
        let policy = try CAKE(budget: .tokens(80), window: w)
        try p.prefill(policy, cache: cache)
        var prefs: [Double] = []
        for l in 0..<4 {
            let (pref, indicator) = reference(p, layer: l, window: w, gamma: 200)
            prefs.append(pref)
            let counts = (0..<2).map { cache.count(layer: l, head: $0) }
            XCTAssertEqual(counts[0], counts[1], "a layer's heads share its budget")
            XCTAssertLessThanOrEqual(counts[0], p.length)
            for m in 0..<2 {
                let kept = cache.positions(layer: l, head: m).map(Int.init)
                let share = kept.count - w
                XCTAssertEqual(Array(kept.suffix(w)), Array((p.length - w)..<p.length), "the window stays")
                let ranked = (0..<(p.length - w)).sorted { indicator[m][$0] != indicator[m][$1] ? indicator[m][$0] > indicator[m][$1] : $0 > $1 }
                let expected = Set(ranked.prefix(share))
                let missing = expected.subtracting(kept.prefix(share))
                // Differences only where the reference's scores tie within f32 rounding.
                for j in missing {
                    let boundary = indicator[m][ranked[share - 1]]
                    XCTAssertEqual(indicator[m][j], boundary, accuracy: 1e-6 * max(1, abs(boundary)), "layer \(l) head \(m) row \(j)")
                }
            }
        }
        // Final shares equal one allocation over all layers' preferences, up to rounding.
        let oneShot = CAKE.allocate(preferences: prefs, total: (80 - w) * 4, cap: p.length - w)
        let shares = (0..<4).map { cache.count(layer: $0, head: 0) - w }
        XCTAssertEqual(shares.reduce(0, +), oneShot.reduce(0, +))
        for (a, b) in zip(shares, oneShot) { XCTAssertLessThanOrEqual(abs(a - b), 4, "\(shares) vs \(oneShot)") }
        XCTAssertNotEqual(Set(shares).count, 1, "preferences differ between layers: \(prefs)")
    }

    func testPrefillPeakAndDecodeStayWithinTheBudget() throws {
        let shape = SyntheticPrompt.shape(layers: 4, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 500, seed: 4)
        let cache = p.makeCache(.f16)
        let compressor = try KVCompressor(policy: try CAKE(budget: .tokens(64)), cache: cache, shape: shape)
        try p.prefill(compressor, prompt: 400, columnSums: true)
        // While layer m is processed, layers before it hold their shares (the total) and layer m the prompt.
        let entry = cache.bytesPerEntry
        XCTAssertLessThanOrEqual(cache.peakByteCount - cache.metadataBytes, (4 * 64 * 2 + 400 * 2) * entry)
        let shares = (0..<4).map { cache.count(layer: $0, head: 0) }
        XCTAssertEqual(shares.reduce(0, +), 4 * 64)
        // Decoding with the step's column sums: each layer stays at its share.
        for t in 400..<500 {
            let step = try compressor.beginDecode()
            for l in 0..<4 {
                try compressor.append(layer: l, step: step, keys: p.rows(p.keys, layer: l, t..<(t + 1)),
                                      values: p.rows(p.values, layer: l, t..<(t + 1)))
                let sums = p.columnSums(cache, layer: l, tokens: t..<(t + 1), positions: step.positions)
                try p.queries[l].withUnsafeBufferPointer { q in
                    try compressor.afterAttention(layer: l, step: step, queries: q.baseAddress! + t * shape.heads * shape.headDim,
                                                  preRoPEQueries: nil, attentionColumnSums: sums)
                }
            }
        }
        XCTAssertEqual((0..<4).map { cache.count(layer: $0, head: 1) }, shares)
        XCTAssertEqual(cache.positions(layer: 2, head: 0).suffix(32), (468..<500).map { Int32($0) }[...])
        XCTAssertThrowsError(try CAKE(budget: .tokens(64), window: 0))
        XCTAssertThrowsError(try CAKE(budget: .tokens(64), tau1: 0))
    }
}
