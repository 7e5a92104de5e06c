import Foundation
import XCTest
@testable import KVCompress

/// Every scorer against an independent double-precision implementation of the formulas in
/// algorithms.md, then the policy's kept set against top-k of the reference scores.
final class ScorerTests: XCTestCase {
    let shape = SyntheticPrompt.shape()

    func prompt(_ length: Int = 96, seed: UInt64 = 7) -> SyntheticPrompt {
        SyntheticPrompt(shape: shape, length: length, seed: seed)
    }

    /// Runs `policy` and checks every head keeps top-`keep` of `reference(layer)`.
    func checkKept<P: KVCachePolicy>(_ policy: P, _ p: SyntheticPrompt, keep: Int,
                                     reference: (Int) -> [[Double]], file: StaticString = #filePath, line: UInt = #line) throws {
        let cache = p.makeCache()
        try p.prefill(policy, cache: cache)
        for l in 0..<shape.layers {
            let ref = reference(l)
            for m in 0..<shape.kvHeads {
                XCTAssertEqual(cache.keptPositions(layer: l)[m], referenceTopK(ref[m], keep),
                               "layer \(l) head \(m)", file: file, line: line)
            }
        }
    }

    // MARK: Knorm

    func knormReference(_ p: SyntheticPrompt, _ l: Int) -> [[Double]] {
        (0..<shape.kvHeads).map { m in (0..<p.length).map { -norm(p.key(l, $0, m)) } }
    }

    func testKnorm() throws {
        let p = prompt()
        let cache = p.makeCache()
        p.append(0..<p.length, to: cache)
        for l in 0..<shape.layers {
            let scorer = KnormScorer()
            var state = scorer.makeState(shape: shape)
            withContext(p, cache: cache, layer: l) { ctx in
                assertScores(scorer.scores(ctx, state: &state), knormReference(p, l))
                // Remembered scores give the same answer.
                assertScores(scorer.scores(ctx, state: &state), knormReference(p, l))
            }
        }
        try checkKept(Knorm(compressionRatio: 0.5), p, keep: 48) { knormReference(p, $0) }
    }

    // MARK: KeyDiff

    func keyDiffReference(_ p: SyntheticPrompt, _ l: Int) -> [[Double]] {
        (0..<shape.kvHeads).map { m in
            let keys = (0..<p.length).map { p.key(l, $0, m) }
            var a = [Double](repeating: 0, count: shape.headDim)
            for k in keys { let n = norm(k); for i in a.indices { a[i] += k[i] / n / Double(p.length) } }
            return keys.map { -dot($0, a) / (norm($0) * norm(a)) }
        }
    }

    func testKeyDiff() throws {
        let p = prompt()
        let cache = p.makeCache()
        p.append(0..<p.length, to: cache)
        for l in 0..<shape.layers {
            withContext(p, cache: cache, layer: l) { ctx in
                assertScores(KeyDiffScorer().scores(ctx), keyDiffReference(p, l), rel: 1e-4, abs: 1e-5)
            }
        }
        try checkKept(KeyDiff(compressionRatio: 0.7), p, keep: Int(96 * 0.3)) { keyDiffReference(p, $0) }
    }

    // MARK: SnapKV

    func snapReference(_ p: SyntheticPrompt, _ l: Int, window w: Int, kernel k: Int) -> [[Double]] {
        let L = p.length, obs = L - w, g = shape.groupSize
        var out = [[Double]](repeating: [Double](repeating: 0, count: L), count: shape.kvHeads)
        for h in 0..<shape.heads {
            let rows = (0..<w).map { p.attention(l, h: h, t: obs + $0) }
            let s = (0..<obs).map { j in rows.reduce(0) { $0 + $1[j] } / Double(w) }
            for j in 0..<obs {
                var acc = 0.0
                for i in (j - k / 2)...(j + k / 2) where i >= 0 && i < obs { acc += s[i] }
                out[h / g][j] += acc / Double(k) / Double(g)
            }
        }
        let mx = out.flatMap { $0[0..<obs] }.max()!
        for m in out.indices { for j in obs..<L { out[m][j] = mx + 1 } }
        return out
    }

    func testSnapKV() throws {
        let p = prompt()
        let cache = p.makeCache()
        p.append(0..<p.length, to: cache)
        let scorer = try SnapKVScorer(window: 16, kernelSize: 5)
        for l in 0..<shape.layers {
            var state = scorer.makeState(shape: shape)
            let got = withContext(p, cache: cache, layer: l) { ctx in
                scorer.observe(ctx, state: &state)
                return scorer.scores(ctx, state: &state)
            }
            assertScores(got, snapReference(p, l, window: 16, kernel: 5), rel: 1e-4, abs: 1e-7)
        }
        try checkKept(SnapKV(compressionRatio: 0.5, window: 16), p, keep: 48) {
            snapReference(p, $0, window: 16, kernel: 5)
        }
    }

    /// Chunked prefill (chunks smaller than the window) gives the same kept sets as one pass.
    func testSnapKVChunkedEqualsSinglePass() throws {
        let p = prompt()
        let a = p.makeCache(), b = p.makeCache()
        try p.prefill(SnapKV(compressionRatio: 0.6, window: 16), cache: a)
        try p.prefill(SnapKV(compressionRatio: 0.6, window: 16), cache: b, chunk: 7)
        for l in 0..<shape.layers { XCTAssertEqual(a.keptPositions(layer: l), b.keptPositions(layer: l)) }
    }

    // MARK: TOVA

    func tovaReference(_ p: SyntheticPrompt, _ l: Int) -> [[Double]] {
        let L = p.length
        var s = [Double](repeating: 0, count: L)
        for h in 0..<shape.heads {
            let a = p.attention(l, h: h, t: L - 1)
            for j in 0..<L { s[j] += a[j] / Double(shape.heads) }
        }
        s[L - 1] = s[0..<(L - 1)].max()! + 1
        return Array(repeating: s, count: shape.kvHeads)
    }

    func testTOVA() throws {
        let p = prompt()
        let cache = p.makeCache()
        p.append(0..<p.length, to: cache)
        for l in 0..<shape.layers {
            withContext(p, cache: cache, layer: l) { ctx in
                assertScores(TOVAScorer().scores(ctx), tovaReference(p, l), rel: 1e-4, abs: 1e-7)
            }
        }
        try checkKept(TOVA(compressionRatio: 0.5), p, keep: 48) { tovaReference(p, $0) }
        // Same set for every KV head.
        let cache2 = p.makeCache()
        try p.prefill(TOVA(compressionRatio: 0.5), cache: cache2)
        for l in 0..<shape.layers {
            let kept = cache2.keptPositions(layer: l)
            XCTAssertTrue(kept.allSatisfy { $0 == kept[0] })
        }
    }

    // MARK: ObservedAttention

    func observedReference(_ p: SyntheticPrompt, _ l: Int) -> [[Double]] {
        let L = p.length, g = shape.groupSize
        var out = [[Double]](repeating: [Double](repeating: 0, count: L), count: shape.kvHeads)
        for h in 0..<shape.heads {
            var sum = [Double](repeating: 0, count: L)
            for t in 0..<L { let a = p.attention(l, h: h, t: t); for j in 0..<L { sum[j] += a[j] } }
            for j in 0..<L { out[h / g][j] += sum[j] / Double(L - j) / Double(g) }
        }
        return out
    }

    func testObservedAttention() throws {
        let p = prompt()
        let cache = p.makeCache()
        p.append(0..<p.length, to: cache)
        let scorer = try ObservedAttentionScorer(blockSize: 10)
        XCTAssertTrue(scorer.needsAttentionColumnSums)
        for l in 0..<shape.layers {
            // Probed, and from the column sums the prefill attention produced.
            for fused in [false, true] {
                var state = scorer.makeState(shape: shape)
                let got = withContext(p, cache: cache, layer: l, columnSums: fused) { ctx in
                    XCTAssertEqual(ctx.attentionColumnSums != nil, fused)
                    scorer.observe(ctx, state: &state)
                    return scorer.scores(ctx, state: &state)
                }
                assertScores(got, observedReference(p, l), rel: 2e-4, abs: 1e-7)
            }
        }
        try checkKept(ObservedAttention(compressionRatio: 0.5), p, keep: 48) { observedReference(p, $0) }
        // Chunked accumulation equals one pass, probed or from column sums.
        let a = p.makeCache()
        try p.prefill(ObservedAttention(compressionRatio: 0.5), cache: a)
        for (chunk, fused) in [(13, false), (nil, true), (13, true)] {
            let b = p.makeCache()
            try p.prefill(ObservedAttention(compressionRatio: 0.5), cache: b, chunk: chunk, columnSums: fused)
            for l in 0..<shape.layers { XCTAssertEqual(a.keptPositions(layer: l), b.keptPositions(layer: l), "chunk \(chunk ?? 0) fused \(fused)") }
        }
    }

    // MARK: NonCausalAttention

    /// The scorer's formula in double precision: unscaled dots inside tiles, the last tile padded
    /// (padded keys at -1e-9, padded queries with logits 0 over the real keys), group mean, value
    /// norm, mean of 3 with zero padding, z-score over the layer.
    func nonCausalReference(_ p: SyntheticPrompt, _ l: Int, tile: Int) -> [[Double]] {
        let n = p.length, g = shape.groupSize
        var raw = [[Double]](repeating: [Double](repeating: 0, count: n), count: shape.kvHeads)
        for start in stride(from: 0, to: n, by: tile) {
            let rows = min(tile, n - start)
            for h in 0..<shape.heads {
                let m = h / g
                var logits = [[Double]](repeating: [], count: tile)
                for t in 0..<tile {
                    logits[t] = (0..<tile).map { j in
                        j >= rows ? -1e-9 : (t >= rows ? 0 : dot(p.query(l, start + t, h), p.key(l, start + j, m)))
                    }
                }
                for row in logits {
                    let mx = row.max()!
                    let e = row.map { exp($0 - mx) }
                    let sum = e.reduce(0, +)
                    for j in 0..<rows { raw[m][start + j] += e[j] / sum / Double(g) }
                }
            }
        }
        var pooled = raw.indices.map { m in
            (0..<n).map { j in raw[m][j] * norm(p.value(l, j, m)) }
        }
        pooled = pooled.map { r in (0..<n).map { j in ((j > 0 ? r[j - 1] : 0) + r[j] + (j + 1 < n ? r[j + 1] : 0)) / 3 } }
        let all = pooled.joined()
        let mean = all.reduce(0, +) / Double(all.count)
        let std = (all.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(all.count - 1)).squareRoot()
        return pooled.map { $0.map { ($0 - mean) / std } }
    }

    func testNonCausalAttention() throws {
        let p = prompt(70, seed: 13)  // tiles of 16: four whole ones and a padded one of 6
        let cache = p.makeCache()
        p.append(0..<p.length, to: cache)
        let scorer = try NonCausalAttentionScorer(tile: 16)
        for l in 0..<shape.layers {
            var state = scorer.makeState(shape: shape)
            let got = try withContext(p, cache: cache, layer: l) { ctx in
                try scorer.observe(ctx, state: &state)
                return try scorer.scores(ctx, state: &state)
            }
            assertScores(got, nonCausalReference(p, l, tile: 16), rel: 1e-4, abs: 1e-5)
        }
        try checkKept(NonCausalAttention(budget: .compressionRatio(0.5), tile: 16), p, keep: 35) {
            nonCausalReference(p, $0, tile: 16)
        }
        // Chunks that cut tiles (13 tokens) give the same kept sets as one pass.
        let a = p.makeCache(), b = p.makeCache()
        try p.prefill(NonCausalAttention(budget: .compressionRatio(0.5), tile: 16), cache: a)
        try p.prefill(NonCausalAttention(budget: .compressionRatio(0.5), tile: 16), cache: b, chunk: 13)
        for l in 0..<shape.layers { XCTAssertEqual(a.keptPositions(layer: l), b.keptPositions(layer: l)) }
    }

    // MARK: ExpectedAttention

    /// Explicit d x d matrices: R(p) = cos-diagonal + pair-rotation sines, averaged over p.
    func expectedReference(_ p: SyntheticPrompt, _ l: Int, sinks s: Int = 4, future n: Int = 512,
                           epsilon: Double = 0) -> [[Double]] {
        let d = p.shape.headDim, L = p.length, g = p.shape.groupSize
        var R = [[Double]](repeating: [Double](repeating: 0, count: d), count: d)
        for pos in L..<(L + n) {
            for i in 0..<(d / 2) {
                let (a, b) = p.shape.rope!.pairing == .neox ? (i, i + d / 2) : (2 * i, 2 * i + 1)
                let angle = Double(Float(pos) * p.shape.rope!.inverseFrequencies[i])
                // x'_a = x_a cos - x_b sin ; x'_b = x_b cos + x_a sin
                R[a][a] += cos(angle) / Double(n)
                R[a][b] += -sin(angle) / Double(n)
                R[b][b] += cos(angle) / Double(n)
                R[b][a] += sin(angle) / Double(n)
            }
        }
        func matvec(_ M: [[Double]], _ x: [Double]) -> [Double] { M.map { dot($0, x) } }
        func matmul(_ A: [[Double]], _ B: [[Double]]) -> [[Double]] {
            A.map { row in (0..<d).map { c in (0..<d).reduce(0) { $0 + row[$1] * B[$1][c] } } }
        }
        let Rt = (0..<d).map { c in (0..<d).map { R[$0][c] } }
        var out = [[Double]](repeating: [Double](repeating: 0, count: L), count: p.shape.kvHeads)
        for h in 0..<p.shape.heads {
            let qs = (s..<L).map { p.query(l, $0, h, pre: true) }
            let mu = (0..<d).map { i in qs.reduce(0) { $0 + $1[i] } / Double(qs.count) }
            var sigma = [[Double]](repeating: [Double](repeating: 0, count: d), count: d)
            for q in qs { for a in 0..<d { for b in 0..<d { sigma[a][b] += (q[a] - mu[a]) * (q[b] - mu[b]) / Double(qs.count) } } }
            let muR = matvec(R, mu)
            let sigR = matmul(matmul(R, sigma), Rt)
            let m = h / g
            var z = (s..<L).map { j -> Double in
                let k = p.key(l, j, m)
                return dot(muR, k) / Double(d).squareRoot() + dot(k, matvec(sigR, k)) / Double(d) / 2
            }
            let mx = z.max()!
            z = z.map { exp($0 - mx) }
            let sum = z.reduce(0, +)
            for (i, j) in (s..<L).enumerated() { out[m][j] += z[i] / sum / Double(g) }
        }
        for m in out.indices { for j in s..<L { out[m][j] = (out[m][j] + epsilon) * norm(p.value(l, j, m)) } }
        let mx = out.flatMap { $0[s..<L] }.max()!
        for m in out.indices { for j in 0..<s { out[m][j] = mx + 1 } }
        return out
    }

    func checkExpected(pairing: RoPEPairing) throws {
        let shape = SyntheticPrompt.shape(layers: 2, pairing: pairing)
        // Small values keep the quadratic term moderate so softmax is not saturated.
        let p = SyntheticPrompt(shape: shape, length: 80, seed: 11, scale: 0.5)
        let cache = p.makeCache()
        p.append(0..<p.length, to: cache)
        let scorer = try ExpectedAttentionScorer()
        for l in 0..<shape.layers {
            var state = scorer.makeState(shape: shape)
            let got = try withContext(p, cache: cache, layer: l) { ctx in
                try scorer.observe(ctx, state: &state)
                return try scorer.scores(ctx, state: &state)
            }
            assertScores(got, expectedReference(p, l), rel: 1e-3, abs: 1e-6)
        }
        let c2 = p.makeCache()
        try p.prefill(ExpectedAttention(compressionRatio: 0.5), cache: c2, chunk: 9)
        for l in 0..<shape.layers {
            let ref = expectedReference(p, l)
            for m in 0..<shape.kvHeads { XCTAssertEqual(c2.keptPositions(layer: l)[m], referenceTopK(ref[m], 40)) }
        }
    }

    func testExpectedAttentionNeoX() throws { try checkExpected(pairing: .neox) }
    func testExpectedAttentionInterleaved() throws { try checkExpected(pairing: .interleaved) }

    func testExpectedAttentionNeedsPreRoPEQueries() throws {
        let p = prompt(32)
        let compressor = try KVCompressor(policy: ExpectedAttention(compressionRatio: 0.5), cache: p.makeCache(), shape: shape)
        let step = try compressor.beginPrefill(tokenCount: 32)
        try compressor.append(layer: 0, step: step, keys: p.rows(p.keys, layer: 0, 0..<32), values: p.rows(p.values, layer: 0, 0..<32))
        XCTAssertThrowsError(try compressor.afterAttention(layer: 0, step: step, queries: p.queries[0], preRoPEQueries: nil)) {
            guard case KVError.invalidParameter(let name, _, _) = $0 else { return XCTFail("\($0)") }
            XCTAssertEqual(name, "preRoPEQueries")
        }
    }
}
