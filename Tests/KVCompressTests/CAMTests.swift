import Foundation
import XCTest
@testable import KVCompress

/// CAM against a double-precision transcription of kvpress's `CAMPress.compress`: the accumulated
/// attention of the generated tokens, the evicted / merging / window rows, the seeded merge draws and
/// the merged values.
final class CAMTests: XCTestCase {
    func testMergesTheBestEvictedValuesIntoTheFollowingKeptOnes() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 16)
        let (prompt, steps, d, g) = (20, 6, 16, 2)
        let p = SyntheticPrompt(shape: shape, length: prompt + 2 * steps, seed: 11)
        let cache = p.makeCache(.f32)
        let policy = try CAM(scorer: KnormScorer(), budget: .tokens(16), interval: steps, mergeBudget: 3, seed: 7)
        let compressor = try KVCompressor(policy: policy, cache: cache, shape: shape, pool: nil)
        try p.prefill(compressor, prompt: prompt)
        func key(_ l: Int, _ t: Int, _ m: Int) -> ArraySlice<Float> { p.keys[l][((t * 2 + m) * d)..<((t * 2 + m) * d + d)] }
        func value(_ l: Int, _ t: Int, _ m: Int) -> [Double] { p.values[l][((t * 2 + m) * d)..<((t * 2 + m) * d + d)].map(Double.init) }
        // Attention the generated tokens pay before the first compression (group mean), in double.
        var attention = Array(repeating: Array(repeating: [Double](repeating: 0, count: prompt + steps), count: 2), count: 2)
        for t in prompt..<(prompt + 2 * steps) {
            let step = try compressor.beginDecode()
            for l in 0..<2 {
                try compressor.append(layer: l, step: step, keys: p.rows(p.keys, layer: l, t..<(t + 1)),
                                      values: p.rows(p.values, layer: l, t..<(t + 1)))
                let sums = p.columnSums(cache, layer: l, tokens: t..<(t + 1), positions: step.positions)
                try p.queries[l].withUnsafeBufferPointer { q in
                    try compressor.afterAttention(layer: l, step: step, queries: q.baseAddress! + t * 4 * d,
                                                  preRoPEQueries: nil, attentionColumnSums: sums)
                }
                guard t < prompt + steps else { continue }
                for h in 0..<4 {
                    let q = p.queries[l][((t * 4 + h) * d)..<((t * 4 + h) * d + d)]
                    let probabilities = ReplayTests.softmax(q, (0...t).map { key(l, $0, h / g) })
                    for (j, w) in probabilities.enumerated() { attention[l][h / g][j] += w / Double(g) }
                }
            }
            guard t == prompt + steps - 1 else { continue }
            // The first compression: 26 entries to 16, the 6 best evicted ones merging.
            var random = MersenneTwister(seed: 7)
            var changed = 0
            for l in 0..<2 {
                let n = prompt + steps
                let scores = (0..<n).map { j in (0..<2).map { m in -key(l, j, m).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }
                    .reduce(0, +) / 2 }
                let byScore = (0..<n).sorted { scores[$0] < scores[$1] }
                let evicted = Array(byScore.prefix(n - 16)), kept = byScore.suffix(16).sorted()
                let merging = evicted.sorted { scores[$0] > scores[$1] }.prefix(steps).sorted()
                XCTAssertEqual(cache.positions(layer: l, head: 1).map { Int($0) }, kept)
                for m in 0..<2 {
                    var values = (0..<n).map { value(l, $0, m) }
                    for e in merging {
                        let window = Array(kept.filter { $0 > e }.prefix(3))
                        guard !window.isEmpty else { continue }
                        let mean = window.reduce(0) { $0 + attention[l][m][$1] } / Double(window.count)
                        let probability = min(max(attention[l][m][e] / mean, 0), 1)
                        guard Double(random.nextUnitFloat()) < probability else { continue }
                        changed += 1
                        for t in window { for i in 0..<d { values[t][i] += values[e][i] / Double(window.count) } }
                    }
                    for (row, t) in kept.enumerated() {
                        let stored = cache.value(layer: l, head: m, row: row)
                        for i in 0..<d { XCTAssertEqual(Double(stored[i]), values[t][i], accuracy: 1e-5, "layer \(l) head \(m) row \(t)") }
                    }
                }
            }
            XCTAssertGreaterThan(changed, 0, "some evicted values merged")
        }
        // The second compression, 6 steps later: back to 16 in every head.
        XCTAssertEqual((0..<2).map { cache.count(layer: $0, head: 0) }, [16, 16])
        XCTAssertThrowsError(try CAM(scorer: KnormScorer(), mergeBudget: 0))
        XCTAssertEqual(try KVPolicyCatalog.make("CAMPress:KnormPress", budget: .tokens(64)).name, "CAM(KnormScorer)")
    }

    func testRefusesHeadsWithDifferentPositions() throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 4, kvHeads: 2, headDim: 16)
        let p = SyntheticPrompt(shape: shape, length: 12, seed: 12)
        let cache = p.makeCache(.f32)
        let compressor = try KVCompressor(policy: try CAM(scorer: KnormScorer(), budget: .tokens(4), interval: 1),
                                          cache: cache, shape: shape, pool: nil)
        try p.prefill(compressor, prompt: 10)
        try cache.retain(layer: 0, head: 1, indices: Array(1..<10))
        let step = try compressor.beginDecode()
        try compressor.append(layer: 0, step: step, keys: p.rows(p.keys, layer: 0, 10..<11), values: p.rows(p.values, layer: 0, 10..<11))
        XCTAssertThrowsError(try p.queries[0].withUnsafeBufferPointer { q in
            try compressor.afterAttention(layer: 0, step: step, queries: q.baseAddress! + 10 * 4 * 16, preRoPEQueries: nil)
        }) { error in
            guard case .invalidState? = error as? KVError else { return XCTFail("\(error)") }
        }
    }
}
