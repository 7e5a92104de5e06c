import Foundation
import XCTest
@testable import KVCompress

/// Random, Cap, CriticalKV, Merging and SimLayerKV against independent double-precision references
/// on synthetic prompts (the model-level parity with kvpress is in `KVPressRatioParityTests`).
final class MorePressTests: XCTestCase {
    let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 16)

    /// The seeded scorer draws PyTorch's numbers: `torch.rand(1, 2, n, generator=torch.Generator().manual_seed(0))`
    /// starts 0.4962566, 0.7682218, 0.08847743 (printed by torch 2.13), head after head; every layer the same.
    func testRandomScorerDrawsTorchsSequence() throws {
        let p = SyntheticPrompt(shape: shape, length: 40, seed: 1)
        let cache = p.makeCache()
        p.append(0..<40, to: cache)
        let s0 = withContext(p, cache: cache, layer: 0) { RandomScorer().scores($0) }
        let s1 = withContext(p, cache: cache, layer: 1) { RandomScorer().scores($0) }
        XCTAssertEqual(Array(s0.heads[0].prefix(3)), [0.4962566, 0.7682218, 0.08847743])
        XCTAssertEqual(s0, s1)
        XCTAssertNotEqual(s0.heads[0], s0.heads[1])
        let other = withContext(p, cache: cache, layer: 0) { RandomScorer(seed: 1).scores($0) }
        XCTAssertNotEqual(other, s0)
        XCTAssertTrue(s0.heads.joined().allSatisfy { $0 >= 0 && $0 < 1 })
    }

    func testPositiveDefiniteInverse() throws {
        var rng = SplitMix64(seed: 3)
        let n = 12
        let b = (0..<(n * n)).map { _ in Double.random(in: -1...1, using: &rng) }
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n { a[i * n + j] += b[k * n + i] * b[k * n + j] } } }
        for i in 0..<n { a[i * n + i] += 1 }
        let inv = try XCTUnwrap(PositiveDefinite.inverse(a, n: n))
        for i in 0..<n {
            for j in 0..<n {
                let x = (0..<n).reduce(0.0) { $0 + a[i * n + $1] * inv[$1 * n + j] }
                XCTAssertEqual(x, i == j ? 1 : 0, accuracy: 1e-9)
            }
        }
        XCTAssertNil(PositiveDefinite.inverse([1, 2, 2, 1], n: 2))
    }

    /// Cap scores against a double-precision reference (Gaussian elimination instead of Cholesky).
    func testCapScoresMatchAReference() throws {
        let L = 60, sinks = 4, d = shape.headDim, g = shape.groupSize
        let p = SyntheticPrompt(shape: shape, length: L, seed: 7)
        let cache = p.makeCache()
        let scorer = try CapScorer(tau: 3, futurePositions: 16, sinks: sinks)
        var state = scorer.makeState(shape: shape)
        p.append(0..<L, to: cache)
        let got = try withContext(p, cache: cache, layer: 1) { ctx in
            try scorer.observe(ctx, state: &state)
            return try scorer.scores(ctx, state: &state)
        }
        let f = shape.rope!.inverseFrequencies.map(Double.init)
        var want = [[Double]](repeating: [Double](repeating: 0, count: L), count: shape.kvHeads)
        for h in 0..<shape.heads {
            var mu = [Double](repeating: 0, count: d)
            for t in sinks..<L { for (i, x) in p.query(1, t, h, pre: true).enumerated() { mu[i] += x / Double(L - sinks) } }
            var rotated = mu
            for i in 0..<(d / 2) {  // neox pairs (i, i + d/2), rotation averaged over positions L ..< L + 16
                let c = (L..<(L + 16)).reduce(0.0) { $0 + cos(Double(Float(Double($1) * f[i]))) } / 16
                let s = (L..<(L + 16)).reduce(0.0) { $0 + sin(Double(Float(Double($1) * f[i]))) } / 16
                rotated[i] = c * mu[i] - s * mu[i + d / 2]
                rotated[i + d / 2] = s * mu[i] + c * mu[i + d / 2]
            }
            let m = h / g
            let cosines = (sinks..<L).map { dot(p.key(1, $0, m), rotated) / norm(p.key(1, $0, m)) / norm(rotated) }
            let top = cosines.max()!
            let w = cosines.map { exp(3 * ($0 - top)) }
            var a = [[Double]](repeating: [Double](repeating: 0, count: d), count: d)
            for i in 0..<d { a[i][i] = 1 }
            for (k, t) in (sinks..<L).enumerated() {
                let v = p.value(1, t, m)
                for i in 0..<d { for j in 0..<d { a[i][j] += (w[k] + 1e-6) * v[i] * v[j] } }
            }
            for (k, t) in (sinks..<L).enumerated() {
                let v = p.value(1, t, m)
                want[m][t] += w[k] * dot(v, solve(a, v)) / Double(g)
            }
        }
        let pad = want.joined().max()! + 1
        for m in want.indices { for j in 0..<sinks { want[m][j] = pad } }
        assertScores(got, want, rel: 1e-4, abs: 1e-7)
    }

    /// CriticalKV's two stages against a reference: stage 1 by the scores, stage 2 by the scores
    /// times the L1 norm of what each value writes through W_o, averaged over the query group.
    func testCriticalKVTwoStagesAgainstAReference() throws {
        let L = 50, d = shape.headDim, hidden = 24, width = shape.heads * d
        let p = SyntheticPrompt(shape: shape, length: L, seed: 11)
        var rng = SplitMix64(seed: 12)
        let w = (0..<(hidden * width)).map { _ in Float.random(in: -1...1, using: &rng) }
        let projection = try KVOutputProjection(hiddenSize: hidden, weights: w, shape: shape)
        let cache = p.makeCache()
        let compressor = try KVCompressor(policy: CriticalKV(scorer: KnormScorer(), budget: .compressionRatio(0.6)),
                                          cache: cache, shape: shape)
        compressor.outputProjection = { _ in projection }
        try p.prefill(compressor)
        let n = 20, first = 10
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                let s = (0..<L).map { -norm(p.key(l, $0, m)) }
                let stage1 = Set(referenceTopK(s, first))
                let proj = (0..<L).map { t -> Double in
                    let v = p.value(l, t, m)
                    return (0..<shape.groupSize).reduce(0.0) { acc, k in
                        let h = m * shape.groupSize + k
                        return acc + (0..<hidden).reduce(0.0) { sum, r in
                            sum + abs((0..<d).reduce(0.0) { $0 + Double(w[r * width + h * d + $1]) * v[$1] })
                        }
                    } / Double(shape.groupSize)
                }
                let s2 = (0..<L).map { stage1.contains($0) ? Double.infinity : (s[$0] + 1e-4) * proj[$0] }
                XCTAssertEqual(cache.keptPositions(layer: l)[m], referenceTopK(s2, n), "layer \(l) head \(m)")
            }
        }
        // Without the host's projection the policy says what is missing.
        let bare = try KVCompressor(policy: CriticalKV(scorer: KnormScorer(), budget: .compressionRatio(0.6)),
                                    cache: p.makeCache(), shape: shape)
        XCTAssertThrowsError(try p.prefill(bare)) { error in
            guard case KVError.invalidParameter(let name, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(name, "outputProjection")
        }
    }

    /// Merging keeps the scorer's rows and folds each dropped value into the kept row with the most
    /// similar key, against a reference.
    func testMergingFoldsDroppedValuesIntoSimilarKeptOnes() throws {
        let L = 40, n = 16
        let p = SyntheticPrompt(shape: shape, length: L, seed: 21)
        let cache = p.makeCache()
        try p.prefill(Merging(scorer: KnormScorer(), budget: .tokens(n)), cache: cache)
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                let kept = referenceTopK((0..<L).map { -norm(p.key(l, $0, m)) }, n)
                XCTAssertEqual(cache.keptPositions(layer: l)[m], kept)
                var values = kept.map { p.value(l, $0, m) }
                var sums = [[Double]](repeating: [Double](repeating: 0, count: shape.headDim), count: n)
                var weights = [Double](repeating: 0, count: n)
                for e in (0..<L) where !kept.contains(e) {
                    let sims = kept.map { dot(p.key(l, e, m), p.key(l, $0, m)) / norm(p.key(l, e, m)) / norm(p.key(l, $0, m)) }
                    let t = sims.indices.max { sims[$0] < sims[$1] }!
                    let ve = p.value(l, e, m)
                    let weight = max(sims[t], 0) * norm(ve) / (norm(ve) + norm(values[t]) + 1e-6)
                    for i in ve.indices { sums[t][i] += weight * ve[i] }
                    weights[t] += weight
                }
                var merged = 0
                for t in 0..<n where weights[t] > 0 {
                    values[t] = values[t].indices.map { (values[t][$0] + sums[t][$0]) / (1 + weights[t]) }
                    merged += 1
                }
                XCTAssertGreaterThan(merged, 0)
                for t in 0..<n {
                    let got = cache.value(layer: l, head: m, row: t)
                    for i in got.indices { XCTAssertEqual(Double(got[i]), values[t][i], accuracy: 1e-5) }
                }
            }
        }
    }

    /// Values of KIVI-quantized entries cannot be rewritten one by one.
    func testSetValuesRefusesKIVIQuantizedEntries() throws {
        let wide = SyntheticPrompt.shape(layers: 1, heads: 2, kvHeads: 1, headDim: 32)
        let p = SyntheticPrompt(shape: wide, length: 200, seed: 2)
        let cache = try KVCache(layers: 1, kvHeads: 1, headDim: 32, keys: .kivi(bits: 4), values: .kivi(bits: 4))
        p.append(0..<200, to: cache)
        cache.compactResidual(layer: 0)
        XCTAssertThrowsError(try cache.setValues(layer: 0, head: 0, rows: 0..<1, values: [Float](repeating: 0, count: 32))) {
            guard case KVError.invalidState = $0 else { return XCTFail("\($0)") }
        }
        let rows = try KVCache(layers: 1, kvHeads: 1, headDim: 4, elementType: .f32)
        try rows.append(layer: 0, keys: [1, 2, 3, 4], values: [1, 2, 3, 4], positions: [0])
        XCTAssertThrowsError(try rows.setValues(layer: 0, head: 0, rows: 0..<2, values: [Float](repeating: 0, count: 8)))
        try rows.setValues(layer: 0, head: 0, rows: 0..<1, values: [5, 6, 7, 8])
        XCTAssertEqual(rows.value(layer: 0, head: 0, row: 0), [5, 6, 7, 8])
    }

    /// KeyDiff's score of each row among `rows` alone (double): minus its cosine to their mean unit key.
    private func keyDiff(_ p: SyntheticPrompt, layer l: Int, head m: Int, rows: [Int]) -> [Double] {
        let units = rows.map { t in p.key(l, t, m).map { $0 / norm(p.key(l, t, m)) } }
        let anchor = (0..<shape.headDim).map { i in units.reduce(0) { $0 + $1[i] } / Double(rows.count) }
        return units.map { -dot($0, anchor) / norm(anchor) }
    }

    /// Chunk: each span of 16 rows scored by KeyDiff on its own, the same fraction kept per span.
    func testChunkScoresEachSpanOnItsOwn() throws {
        let L = 40
        let p = SyntheticPrompt(shape: shape, length: L, seed: 41)
        let cache = p.makeCache()
        try p.prefill(Chunk(scorer: KeyDiffScorer(), budget: .compressionRatio(0.5), chunkLength: 16), cache: cache)
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                var want: [Int] = []
                for start in stride(from: 0, to: L, by: 16) {
                    let span = Array(start..<min(start + 16, L))
                    want += referenceTopK(keyDiff(p, layer: l, head: m, rows: span), span.count / 2).map { $0 + start }
                }
                XCTAssertEqual(cache.keptPositions(layer: l)[m], want, "layer \(l) head \(m)")
            }
        }
        // A token budget is spread over the spans in proportion: 10 of 40 -> 4, 4, 2.
        let tokens = p.makeCache()
        try p.prefill(Chunk(scorer: KnormScorer(), budget: .tokens(10), chunkLength: 16), cache: tokens)
        XCTAssertEqual(tokens.count(layer: 0, head: 0), 10)
    }

    /// Block: keep the first n, then add 8 rows at a time and keep the best n of the union by KeyDiff
    /// scored on the union alone.
    func testBlockKeepsTheBestOfEachUnion() throws {
        let L = 45, n = 12
        let p = SyntheticPrompt(shape: shape, length: L, seed: 43)
        let cache = p.makeCache()
        try p.prefill(Block(scorer: KeyDiffScorer(), budget: .tokens(n), blockSize: 8), cache: cache)
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                var kept = Array(0..<n)
                for start in stride(from: n, to: L, by: 8) {
                    let union = kept + Array(start..<min(start + 8, L))
                    kept = referenceTopK(keyDiff(p, layer: l, head: m, rows: union), n).map { union[$0] }.sorted()
                }
                XCTAssertEqual(cache.keptPositions(layer: l)[m], kept, "layer \(l) head \(m)")
            }
        }
    }

    /// Composed: the second policy scores and cuts what the first kept.
    func testComposedRunsTheSecondPolicyOnWhatTheFirstKept() throws {
        let L = 40
        let p = SyntheticPrompt(shape: shape, length: L, seed: 47)
        let cache = p.makeCache()
        let policy = Composed(try Knorm(compressionRatio: 0.5), try KeyDiff(budget: .compressionRatio(0.5)))
        try p.prefill(policy, cache: cache, chunk: 16)
        XCTAssertEqual(policy.name, "Composed(Knorm, KeyDiff)")
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                let first = referenceTopK((0..<L).map { -norm(p.key(l, $0, m)) }, 20)
                let second = referenceTopK(keyDiff(p, layer: l, head: m, rows: first), 10).map { first[$0] }
                XCTAssertEqual(cache.keptPositions(layer: l)[m], second, "layer \(l) head \(m)")
            }
        }
        // The second policy asks for column sums when it needs them; after the first evicted it probes instead.
        let withSums = Composed(try Knorm(compressionRatio: 0.5), try ObservedAttention(budget: .compressionRatio(0.5)))
        XCTAssertTrue(withSums.needsAttentionColumnSums)
        let other = p.makeCache()
        try p.prefill(withSums, cache: other, columnSums: true)
        XCTAssertEqual(other.count(layer: 0, head: 0), 10)
    }

    /// Decoding: the prompt stays whole; every 4 generated tokens each head is cut to its target.
    func testDecodingCutsEveryIntervalToTheTarget() throws {
        let p = SyntheticPrompt(shape: shape, length: 28, seed: 53)
        for budget in [KVBudget.tokens(12), .compressionRatio(0.5)] {
            let cache = p.makeCache()
            let compressor = try p.prefill(try Decoding(scorer: KnormScorer(), budget: budget, interval: 4), cache: cache, prompt: 20)
            XCTAssertEqual(cache.count(layer: 1, head: 1), 20)
            for t in 20..<28 { try p.decode(compressor, token: t) }
            for m in 0..<shape.kvHeads {
                let score = { (t: Int) in -norm(p.key(1, t, m)) }
                let afterFirst = referenceTopK((0..<24).map(score), 12)  // 24 tokens seen: ratio 0.5 keeps 12 too
                let rows = afterFirst + Array(24..<28)
                let target = budget == .tokens(12) ? 12 : 14         // 28 seen: ratio 0.5 keeps 14
                let want = referenceTopK(rows.map(score), target).map { rows[$0] }.sorted()
                XCTAssertEqual(cache.keptPositions(layer: 1)[m], want, "\(budget) head \(m)")
            }
        }
        XCTAssertThrowsError(try Decoding(scorer: KnormScorer(), interval: 0))
    }

    /// torch's `torch.manual_seed(0); torch.randn(1, 3, 64, 48)` starts -1.1258398, -1.1523602,
    /// -0.25057858, -0.4338788 (torch 2.13; its vectorized log/cos/sin differ by about an ulp).
    func testNormalsFollowTorchsRandn() {
        var generator = MersenneTwister(seed: 0)
        let x = generator.normals(count: 3 * 64 * 48)
        for (got, want) in zip(x.prefix(4), [Float(-1.1258398), -1.1523602, -0.25057858, -0.4338788]) {
            XCTAssertEqual(got, want, accuracy: 1e-6)
        }
        let mean = x.reduce(0, +) / Float(x.count), variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(x.count)
        XCTAssertEqual(mean, 0, accuracy: 0.05)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
    }

    /// LeverageScore against a double-precision reference on the same sketch: pre-RoPE keys, centered,
    /// sketched, `x^T (G + 0.01 I)^-1 x`, z-scored over the layer; skipped rows score above all.
    func testLeverageScoresMatchAReference() throws {
        let L = 50, d = shape.headDim, k = 8
        let p = SyntheticPrompt(shape: shape, length: L, seed: 61)
        let cache = p.makeCache()
        p.append(0..<L, to: cache)
        for (skipFirst, skipLast) in [(0, 0), (3, 2)] {
            let scorer = try LeverageScoreScorer(sketchDimension: k, seed: 5, skipFirst: skipFirst, skipLast: skipLast)
            var state = scorer.makeState(shape: shape)
            let got = try withContext(p, cache: cache, layer: 0) { try scorer.scores($0, state: &state) }
            var generator = MersenneTwister(seed: 5)
            let sketch = generator.normals(count: shape.kvHeads * d * k).map { Double($0) / Double(k).squareRoot() }
            let rows = Array(skipFirst..<(L - skipLast))
            var raw: [[Double]] = []
            for m in 0..<shape.kvHeads {
                var keys = rows.flatMap { p.key(0, $0, m).map(Float.init) }
                shape.rope!.apply(to: &keys, heads: 1, positions: rows.map { -Int32($0) })
                let mean = (0..<d).map { i in rows.indices.reduce(0.0) { $0 + Double(keys[$1 * d + i]) } / Double(rows.count) }
                let x = rows.indices.map { j in (0..<k).map { c in (0..<d).reduce(0.0) { $0 + (Double(keys[j * d + $1]) - mean[$1]) * sketch[(m * d + $1) * k + c] } } }
                var g = (0..<k).map { a in (0..<k).map { b in x.reduce(0.0) { $0 + $1[a] * $1[b] } } }
                for a in 0..<k { g[a][a] += 1e-2 }
                raw.append(x.map { max(0, dot($0, solve(g, $0))) })
            }
            let all = raw.joined()
            let mu = all.reduce(0, +) / Double(all.count)
            let sd = (all.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(all.count - 1)).squareRoot()
            let big = Double(Float.greatestFiniteMagnitude)
            let want = raw.map { Array(repeating: big, count: skipFirst) + $0.map { ($0 - mu) / sd } + Array(repeating: big, count: skipLast) }
            assertScores(got, want, rel: 1e-3, abs: 1e-3)
        }
    }

    /// SimLayerKV: a layer is lazy exactly when the last query's mass on the initial and recent rows
    /// exceeds the threshold; lazy layers keep those rows and stay a window while decoding.
    func testSimLayerKVDecidesByAttentionMassAndRollsLazyLayers() throws {
        let L = 30, initial = 2, recent = 8
        let p = SyntheticPrompt(shape: shape, length: L + 2, seed: 31)
        var mass = 0.0
        for h in 0..<shape.heads {
            let a = p.attention(0, h: h, t: L - 1)
            mass += (a[0..<initial].reduce(0, +) + a[(L - 1 - recent)..<(L - 1)].reduce(0, +)) / Double(shape.heads)
        }
        for (threshold, lazy) in [(mass - 1e-4, true), (mass + 1e-4, false)] {
            let cache = p.makeCache()
            let policy = try SimLayerKV(lazyThreshold: threshold, recentTokens: recent, initialTokens: initial)
            let compressor = try p.prefill(policy, cache: cache, prompt: L)
            let window = [0, 1] + Array((L - recent + 1)..<L)
            XCTAssertEqual(cache.keptPositions(layer: 0), Array(repeating: lazy ? window : Array(0..<L), count: shape.kvHeads),
                           "threshold \(threshold)")
            guard lazy else { continue }
            try p.decode(compressor, token: L)
            try p.decode(compressor, token: L + 1)
            XCTAssertEqual(cache.keptPositions(layer: 0)[0], [0, 1] + Array((L - recent + 3)...(L + 1)))
        }
        let off = p.makeCache()
        try p.prefill(try SimLayerKV(lazyThreshold: 1, recentTokens: recent, initialTokens: initial), cache: off, prompt: L)
        XCTAssertEqual(off.keptPositions(layer: 1)[0], Array(0..<L))
        XCTAssertThrowsError(try SimLayerKV(lazyThreshold: 1.5))
        XCTAssertThrowsError(try SimLayerKV(lastQueries: 8, recentTokens: 8))
    }
}

/// `a x = b` by Gaussian elimination with partial pivoting (double).
private func solve(_ a: [[Double]], _ b: [Double]) -> [Double] {
    var m = a.indices.map { a[$0] + [b[$0]] }
    let n = b.count
    for c in 0..<n {
        let pivot = (c..<n).max { abs(m[$0][c]) < abs(m[$1][c]) }!
        m.swapAt(c, pivot)
        for r in 0..<n where r != c {
            let f = m[r][c] / m[c][c]
            for k in c...n { m[r][k] -= f * m[c][k] }
        }
    }
    return (0..<n).map { m[$0][n] / m[$0][$0] }
}
