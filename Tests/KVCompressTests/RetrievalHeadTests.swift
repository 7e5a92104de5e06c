import Foundation
import XCTest
@testable import KVCompress

/// Merged entries (log-counts), Λ-shaped prefill windows, head patterns, DuoAttention and
/// RazorAttention, against naive double-precision references.
final class RetrievalHeadTests: XCTestCase {
    // MARK: - References

    /// Attention of one query over explicit rows (keys, values, log-counts), in double.
    private func naive(_ q: [Double], keys: [[Double]], values: [[Double]], logCounts: [Double]? = nil) -> [Double] {
        let s = 1 / Double(q.count).squareRoot()
        let z = keys.indices.map { dot(q, keys[$0]) * s + (logCounts?[$0] ?? 0) }
        let mx = z.max()!
        let w = z.map { exp($0 - mx) }
        let total = w.reduce(0, +)
        return (0..<q.count).map { i in keys.indices.reduce(0) { $0 + w[$1] * values[$1][i] } / total }
    }

    private func decode(_ cache: KVCache, layer: Int, query: [Float], heads: Int) -> [Float] {
        var out = [Float](repeating: 0, count: query.count)
        cache.attend(layer: layer, query: query, heads: heads, output: &out)
        return out
    }

    private func assertClose(_ a: [Float], _ b: [Double], _ tol: Double, _ what: String, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, line: line)
        let err = zip(a, b).map { abs(Double($0) - $1) }.max() ?? 0
        XCTAssertLessThan(err, tol, what, line: line)
    }

    // MARK: - Merged entries

    func testCompensationTokenOfIdenticalKeysEqualsTheDroppedTokens() throws {
        // When every dropped key is the same, one merged entry counted |D| times gives exactly the
        // attention over the dropped tokens themselves (the specification's check).
        let d = 32, n = 40
        var rng = SplitMix64(seed: 1)
        let shared = (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
        var keys: [Float] = [], values: [Float] = []
        for j in 0..<n {
            keys += (4..<30).contains(j) ? shared : (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
            values += (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
        }
        let cache = try KVCache(layers: 1, kvHeads: 1, headDim: d, elementType: .f32)
        try cache.append(layer: 0, keys: keys, values: values, positions: (0..<n).map { Int32($0) })
        let query = (0..<(2 * d)).map { _ in Float.random(in: -2...2, using: &rng) }  // two query heads (GQA)
        let before = decode(cache, layer: 0, query: query, heads: 2)
        try cache.merge(layer: 0, head: 0, rows: 4..<30)
        XCTAssertEqual(cache.count(layer: 0, head: 0), n - 25)
        XCTAssertEqual(cache.logCount(layer: 0, head: 0, row: 4), Float(log(26.0)), accuracy: 1e-6)
        XCTAssertEqual(cache.logCount(layer: 0, head: 0, row: 5), 0)
        XCTAssertEqual(cache.positions(layer: 0, head: 0)[4], 29, "the merged entry takes the last merged position")
        let after = decode(cache, layer: 0, query: query, heads: 2)
        assertClose(after, before.map(Double.init), 1e-5, "decode with the compensation token")
        // Prefill and observation read the log-count too: a later query sees the same output, and
        // the merged entry's probability is the dropped tokens' total.
        var out = [Float](repeating: 0, count: 2 * d)
        var probs = [Float](repeating: 0, count: 2 * (n - 25))
        query.withUnsafeBufferPointer { q in
            let p: [Int32] = [100]
            cache.attendPrefill(layer: 0, queries: q.baseAddress!, queryCount: 1, queryTokenStride: 2 * d,
                                queryPositions: p, heads: 2, output: &out)
            cache.observe(layer: 0, queries: q.baseAddress!, queryCount: 1, queryTokenStride: 2 * d, queryPositions: p,
                          heads: 2, output: &probs, outputKeyStride: n - 25)
        }
        assertClose(out, before.map(Double.init), 1e-5, "prefill with the compensation token")
        let fresh = try KVCache(layers: 1, kvHeads: 1, headDim: d, elementType: .f32)
        try fresh.append(layer: 0, keys: keys, values: values, positions: (0..<n).map { Int32($0) })
        var full = [Float](repeating: 0, count: 2 * n)
        query.withUnsafeBufferPointer { q in
            fresh.observe(layer: 0, queries: q.baseAddress!, queryCount: 1, queryTokenStride: 2 * d, queryPositions: [100],
                          heads: 2, output: &full, outputKeyStride: n)
        }
        for h in 0..<2 {
            XCTAssertEqual(Double(probs[h * (n - 25) + 4]), full[(h * n + 4)..<(h * n + 30)].reduce(0) { $0 + Double($1) }, accuracy: 1e-5)
        }
    }

    func testMergedEntriesAgainstANaiveReference() throws {
        // Arbitrary keys: the merged entry is the count-weighted mean; merging a merged entry again
        // equals merging all its tokens at once; attention adds ln(count) to its logit.
        let d = 32, n = 50
        var rng = SplitMix64(seed: 2)
        let keys = (0..<(n * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let values = (0..<(n * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let cache = try KVCache(layers: 1, kvHeads: 1, headDim: d, elementType: .f32)
        try cache.append(layer: 0, keys: keys, values: values, positions: (0..<n).map { Int32($0) })
        try cache.merge(layer: 0, head: 0, rows: 3..<10)       // tokens 3..<10 -> row 3
        try cache.merge(layer: 0, head: 0, rows: 3..<6)        // + tokens 10, 11 -> row 3 (9 tokens)
        func row(_ t: Int, _ table: [Float]) -> [Double] { table[(t * d)..<((t + 1) * d)].map(Double.init) }
        func mean(_ ts: Range<Int>, _ table: [Float]) -> [Double] {
            (0..<d).map { i in ts.reduce(0) { $0 + row($1, table)[i] } / Double(ts.count) }
        }
        let expectedKeys = (0..<3).map { row($0, keys) } + [mean(3..<12, keys)] + (12..<n).map { row($0, keys) }
        let expectedValues = (0..<3).map { row($0, values) } + [mean(3..<12, values)] + (12..<n).map { row($0, values) }
        XCTAssertEqual(cache.count(layer: 0, head: 0), expectedKeys.count)
        assertClose(cache.key(layer: 0, head: 0, row: 3), expectedKeys[3], 1e-6, "merged key")
        assertClose(cache.value(layer: 0, head: 0, row: 3), expectedValues[3], 1e-6, "merged value")
        XCTAssertEqual(Double(cache.logCount(layer: 0, head: 0, row: 3)), log(9.0), accuracy: 1e-6)
        let counts = expectedKeys.indices.map { $0 == 3 ? log(9.0) : 0 }
        for seed in 0..<3 {
            var r = SplitMix64(seed: 10 + UInt64(seed))
            let q = (0..<d).map { _ in Float.random(in: -3...3, using: &r) }
            assertClose(decode(cache, layer: 0, query: q, heads: 1),
                        naive(q.map(Double.init), keys: expectedKeys, values: expectedValues, logCounts: counts), 2e-5,
                        "decode over a merged entry")
        }
    }

    func testMergeBytesAndRefusals() throws {
        let cache = try KVCache(layers: 1, kvHeads: 2, headDim: 32, elementType: .f16)
        let n = 20
        try cache.append(layer: 0, keys: Array(repeating: 0.5, count: n * 64), values: Array(repeating: 0.25, count: n * 64),
                         positions: (0..<n).map { Int32($0) })
        XCTAssertEqual(cache.byteCount, 2 * n * cache.bytesPerEntry + cache.metadataBytes)
        let rowBytes = cache.bytesPerEntry
        try cache.merge(layer: 0, head: 1, rows: 2..<12)
        // Head 1 now stores a 4-byte log-count per row; head 0 is unchanged.
        XCTAssertEqual(cache.byteCount, n * rowBytes + (n - 9) * (rowBytes + 4) + cache.metadataBytes)
        XCTAssertEqual(cache.totalEntries, 2 * n - 9)
        XCTAssertThrowsError(try cache.merge(layer: 0, head: 0, rows: 5..<6)) { XCTAssertTrue("\($0)".contains("two or more")) }
        XCTAssertThrowsError(try cache.merge(layer: 0, head: 0, rows: 15..<25))
        XCTAssertThrowsError(try cache.merge(layer: 0, head: 2, rows: 0..<2))
        let kivi = try KVCache(layers: 1, kvHeads: 1, headDim: 32, keys: .kivi(bits: 2), values: .kivi(bits: 2))
        try kivi.append(layer: 0, keys: Array(repeating: 0.5, count: 4 * 32), values: Array(repeating: 0.5, count: 4 * 32),
                        positions: [0, 1, 2, 3])
        XCTAssertThrowsError(try kivi.merge(layer: 0, head: 0, rows: 0..<2)) { error in
            guard case KVError.invalidState = error else { return XCTFail("\(error)") }
        }
        // Eviction and shrinking keep each row's count with its row.
        try cache.retain(layer: 0, head: 1, indices: [0, 2, 3, 10])
        XCTAssertEqual(cache.logCount(layer: 0, head: 1, row: 1), Float(log(10.0)), accuracy: 1e-6)
        XCTAssertEqual(cache.logCount(layer: 0, head: 1, row: 2), 0)
        cache.removeAll()
        XCTAssertEqual(cache.byteCount, cache.metadataBytes)
    }

    // MARK: - Λ-shaped prefill windows

    func testPrefillWindowsAgainstANaiveMask() throws {
        // Three KV heads over 300 rows (several key tiles), queries at the last 40 positions and a
        // chunk in the middle: window head 0 (4 sinks + 50 recent), head 1 none, head 2 (0 + 130).
        let d = 32, n = 300, heads = 6
        var rng = SplitMix64(seed: 3)
        let keys = (0..<(n * 3 * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let values = (0..<(n * 3 * d)).map { _ in Float.random(in: -1...1, using: &rng) }
        let cache = try KVCache(layers: 1, kvHeads: 3, headDim: d, elementType: .f32)
        try cache.append(layer: 0, keys: keys, values: values, positions: (0..<n).map { Int32($0) })
        let windows: [KVAttentionWindow?] = [KVAttentionWindow(sinks: 4, recent: 50), nil, KVAttentionWindow(sinks: 0, recent: 130)]
        for (first, count) in [(260, 40), (100, 37)] {
            let queries = (0..<(count * heads * d)).map { _ in Float.random(in: -2...2, using: &rng) }
            let positions = (first..<(first + count)).map { Int32($0) }
            var out = [Float](repeating: 0, count: count * heads * d)
            var sums = [Float](repeating: 0, count: 3 * n)
            Attention.prefill(queries: queries, queryCount: count, queryTokenStride: heads * d, queryPositions: positions,
                              heads: heads, headDim: d, parts: cache.headParts(layer: 0), output: &out, columnSums: &sums,
                              columnSumStride: n, windows: windows, pool: .shared)
            var expectedSums = [Double](repeating: 0, count: 3 * n)
            for t in 0..<count {
                let p = first + t
                for h in 0..<heads {
                    let m = h / 2
                    let visible = (0...p).filter { j in windows[m].map { j < $0.sinks || j > p - $0.recent } ?? true }
                    let q = queries[((t * heads + h) * d)..<((t * heads + h + 1) * d)].map(Double.init)
                    func row(_ table: [Float], _ j: Int) -> [Double] {
                        table[((j * 3 + m) * d)..<((j * 3 + m + 1) * d)].map(Double.init)
                    }
                    let expected = naive(q, keys: visible.map { row(keys, $0) }, values: visible.map { row(values, $0) })
                    assertClose(Array(out[((t * heads + h) * d)..<((t * heads + h + 1) * d)]), expected, 2e-5,
                                "window head \(m) query \(p)")
                    let s = 1 / Double(d).squareRoot()
                    let z = visible.map { dot(q, row(keys, $0)) * s }
                    let mx = z.max()!
                    let total = z.reduce(0) { $0 + exp($1 - mx) }
                    for (j, zj) in zip(visible, z) { expectedSums[m * n + j] += exp(zj - mx) / total }
                }
            }
            for i in 0..<(3 * n) { XCTAssertEqual(Double(sums[i]), expectedSums[i], accuracy: 1e-4, "column sum \(i)") }
        }
    }

    // MARK: - Patterns

    func testHeadScoresTSVRoundTripAndErrors() throws {
        let scores = try KVHeadScores([[0.25, 1, 0], [0.5, 0.125, 0.75]])
        XCTAssertEqual(try KVHeadScores.parseTSV(scores.tsv, path: "x"), scores)
        XCTAssertEqual(try KVHeadScores.parseTSV("0.5\t1\r\n\n0.25\t0\n", path: "x").values, [[0.5, 1], [0.25, 0]])
        XCTAssertThrowsError(try KVHeadScores.parseTSV("0.5\t1\n0.25\tx\n", path: "p.tsv")) { error in
            guard case let KVError.malformedFile(path, field, offset, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "p.tsv")
            XCTAssertEqual(field, "line 2")
            XCTAssertEqual(offset, 6)
        }
        XCTAssertThrowsError(try KVHeadScores.parseTSV("0.5\t1\n0.25\n", path: "p.tsv"))
        XCTAssertThrowsError(try KVHeadScores.parseTSV("", path: "p.tsv"))
        XCTAssertThrowsError(try KVHeadScores([[.nan]]))
        XCTAssertEqual(scores.ranking.map { "\($0.layer).\($0.head)" }, ["0.1", "1.2", "1.0", "0.0", "1.1", "0.2"])
    }

    func testDuoPatternFilesAndQuantileSparsification() throws {
        let gates = try KVHeadScores([[0.1, 0.9, 0.4], [0.7, 0.2, 0.6]])
        let pattern = try DuoAttentionPattern(gates: gates, sinkSize: 64, recentSize: 256)
        XCTAssertEqual(try DuoAttentionPattern(tsv: pattern.tsv, config: pattern.configJSON(extra: ["method": "a \"b\""]), path: "d"),
                       pattern)
        XCTAssertThrowsError(try DuoAttentionPattern(tsv: pattern.tsv, config: "{\"sink_size\": 64}", path: "d")) { error in
            XCTAssertTrue("\(error)".contains("recent_size"), "\(error)")
        }
        XCTAssertThrowsError(try DuoAttentionPattern(tsv: pattern.tsv, config: "[1]", path: "d"))
        // Values outside [0, 1] are clipped on reading, as the reference loads them.
        XCTAssertEqual(try DuoAttentionPattern(tsv: "2\t-1\n", config: "{\"sink_size\": 4, \"recent_size\": 8}", path: "d").gates.values,
                       [[1, 0]])
        // Hand-computed quantiles (NumPy linear interpolation over the 6 gates 0.1 0.2 0.4 0.6 0.7 0.9):
        // sparsity 0.5 -> index 2.5 -> threshold 0.5: heads 0.6 0.7 0.9 are retrieval heads.
        XCTAssertEqual(pattern.retrievalHeads(sparsity: 0.5), [[false, true, false], [true, false, true]])
        // 0.2 -> index 1 -> threshold = the gate 0.2 itself (with its noise): a retrieval head, since
        // heads at or above the threshold are.
        XCTAssertEqual(pattern.retrievalHeads(sparsity: 0.2), [[false, true, true], [true, true, true]])
        XCTAssertEqual(pattern.retrievalHeads(sparsity: 1), [[false, false, false], [false, false, false]])
        XCTAssertEqual(pattern.retrievalHeads(sparsity: 0), [[true, true, true], [true, true, true]])
        // Ties: the seeded noise splits equal gates, the same way for the same seed.
        let tied = try DuoAttentionPattern(gates: try KVHeadScores([[0.5, 0.5, 0.5, 0.5]]), sinkSize: 1, recentSize: 1)
        let split = tied.retrievalHeads(sparsity: 0.5)
        XCTAssertEqual(split[0].filter { $0 }.count, 2)
        XCTAssertEqual(tied.retrievalHeads(sparsity: 0.5), split)
    }

    func testRazorHeadSelectionAndFiles() throws {
        // 2 layers x 5 heads = 10 heads: echo ratio 0.1 -> 1 head, induction 0.3 -> 3 heads.
        let echo = try KVHeadScores([[0, 0.9, 0, 0, 0], [0, 0, 0, 0, 0.1]])
        let induction = try KVHeadScores([[0.5, 0.8, 0, 0, 0], [0, 0.7, 0, 0, 0]])
        let heads = try RazorHeads(echo: echo, induction: induction, echoRatio: 0.1, inductionRatio: 0.3)
        XCTAssertEqual(heads.heads, [KVHeadIndex(layer: 0, head: 1), KVHeadIndex(layer: 1, head: 1), KVHeadIndex(layer: 0, head: 0)])
        XCTAssertEqual(try RazorHeads(json: heads.json, path: "h.json"), heads)
        let plain = try RazorHeads(json: "{\"3\": [1, 0], \"1\": [2]}", path: "g.json")
        XCTAssertEqual(plain.heads, [KVHeadIndex(layer: 1, head: 2), KVHeadIndex(layer: 3, head: 1), KVHeadIndex(layer: 3, head: 0)])
        XCTAssertThrowsError(try RazorHeads(json: "{\"a\": [1]}", path: "g.json"))
        XCTAssertThrowsError(try RazorHeads(json: "{\"1\": [1, 1]}", path: "g.json"))
        XCTAssertThrowsError(try RazorHeads(echo: echo, induction: induction, echoRatio: 2))
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2)
        XCTAssertThrowsError(try plain.check(shape)) { XCTAssertTrue("\($0)".contains("1.2"), "\($0)") }
    }

    // MARK: - Policies

    private func duoPattern(_ shape: KVModelShape, sinks: Int = 4, recent: Int = 16) throws -> DuoAttentionPattern {
        var rng = SplitMix64(seed: 9)
        let gates = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in Float.random(in: 0...1, using: &rng) } }
        return try DuoAttentionPattern(gates: try KVHeadScores(gates), sinkSize: sinks, recentSize: recent)
    }

    /// Runs `compressor.attend` over the synthetic prompt in chunks, returning each layer's outputs.
    private func attendPrompt(_ p: SyntheticPrompt, _ compressor: KVCompressor, chunk: Int) throws -> [[Float]] {
        let (qw, kw) = (p.shape.heads * p.shape.headDim, p.shape.kvHeads * p.shape.headDim)
        var outputs = Array(repeating: [Float](), count: p.shape.layers)
        var start = 0
        while start < p.length {
            let end = min(p.length, start + chunk)
            let step = try compressor.beginPrefill(tokenCount: end - start, endsPrompt: end == p.length)
            for l in 0..<p.shape.layers {
                var out = [Float](repeating: 0, count: (end - start) * qw)
                try compressor.attend(layer: l, step: step, queries: Array(p.queries[l][(start * qw)..<(end * qw)]),
                                      preRoPEQueries: nil, keys: Array(p.keys[l][(start * kw)..<(end * kw)]),
                                      values: Array(p.values[l][(start * kw)..<(end * kw)]), output: &out)
                outputs[l] += out
            }
            start = end
        }
        return outputs
    }

    func testDuoAttentionStreamingHeadsAttendAndStayBounded() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 2300, seed: 4)
        let pattern = try duoPattern(shape)
        let policy = try DuoAttention(pattern: pattern, sparsity: 0.5)
        let retrieval = pattern.retrievalHeads(sparsity: 0.5)
        XCTAssertEqual(retrieval.flatMap { $0 }.filter { $0 }.count, 2)
        // Prefill in chunks of 96: a streaming head's output equals Λ-masked attention over the whole
        // prompt (4 sinks + 16 recent), however the prompt is chunked, and its cache is cut after each chunk.
        let compressor = try KVCompressor(policy: policy, cache: p.makeCache(), shape: shape)
        let prompt = 300
        let short = SyntheticPrompt(shape: shape, length: prompt, seed: 4)
        let outputs = try attendPrompt(short, compressor, chunk: 96)
        for l in 0..<shape.layers {
            for h in 0..<shape.heads {
                let m = h / shape.groupSize
                for t in [0, 10, 95, 96, 150, 299] {
                    let visible = (0...t).filter { retrieval[l][m] || $0 < 4 || $0 > t - 16 }
                    let q = short.query(l, t, h)
                    let expected = naive(q, keys: visible.map { short.key(l, $0, m) }, values: visible.map { short.value(l, $0, m) })
                    let o = (t * shape.heads + h) * shape.headDim
                    assertClose(Array(outputs[l][o..<(o + shape.headDim)]), expected, 2e-5, "layer \(l) head \(h) token \(t)")
                }
                XCTAssertEqual(compressor.cache.count(layer: l, head: m), retrieval[l][m] ? prompt : 4 + 15)
            }
        }
        // 2,000 decode steps: streaming heads never hold more than sinks + recent entries (bounded),
        // retrieval heads keep everything.
        for t in prompt..<(prompt + 2000) {
            try p.decode(compressor, token: t)
            for l in 0..<shape.layers {
                for m in 0..<shape.kvHeads {
                    let n = compressor.cache.count(layer: l, head: m)
                    if retrieval[l][m] { XCTAssertEqual(n, t + 1) } else { XCTAssertEqual(n, 19) }
                }
            }
        }
        let streaming = try XCTUnwrap((0..<4).first { !retrieval[$0 / 2][$0 % 2] })
        XCTAssertEqual(compressor.cache.positions(layer: streaming / 2, head: streaming % 2),
                       (0..<4).map { Int32($0) } + ((prompt + 2000 - 15)..<(prompt + 2000)).map { Int32($0) })
    }

    func testDuoAttentionBudgetSplit() throws {
        let shape = SyntheticPrompt.shape(layers: 3, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 400, seed: 5)
        let pattern = try duoPattern(shape, sinks: 4, recent: 28)
        let cache = p.makeCache(.f16)
        let full = 6 * 400 * cache.bytesPerEntry
        // 40 % of the bytes: r retrieval heads of 400 + (6 - r) streaming heads of 31 entries fit when
        // 400 r + 31 (6 - r) <= 960, so r = 2: the two highest gates.
        try p.prefill(try DuoAttention(pattern: pattern, budget: .bytes(full * 40 / 100)), cache: cache, chunk: 128)
        let top = pattern.gates.top(2)
        for l in 0..<3 {
            for m in 0..<2 { XCTAssertEqual(cache.count(layer: l, head: m), top[l][m] ? 400 : 31, "\(l).\(m)") }
        }
        XCTAssertLessThanOrEqual(cache.byteCount - cache.metadataBytes, full * 40 / 100)
        // A budget below all-streaming shrinks the window: 3 % of 400 = 12 entries per head.
        let small = p.makeCache(.f16)
        try p.prefill(try DuoAttention(pattern: pattern, budget: .compressionRatio(0.97)), cache: small)
        for l in 0..<3 { for m in 0..<2 { XCTAssertEqual(small.count(layer: l, head: m), 12) } }
        // A pattern of another shape is refused at the first hook.
        let other = try DuoAttentionPattern(gates: try KVHeadScores([[1, 0]]), sinkSize: 4, recentSize: 8)
        XCTAssertThrowsError(try p.prefill(try DuoAttention(pattern: other), cache: p.makeCache())) { error in
            guard case KVError.shapeMismatch = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try DuoAttention(pattern: other, sparsity: 1.5))
    }

    func testRazorAttentionCompensatesAndRolls() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 700, seed: 6)
        let heads = try RazorHeads(heads: [KVHeadIndex(layer: 1, head: 0)])
        let cache = p.makeCache()
        let policy = try RazorAttention(heads: heads, sinks: 4, minimumBuffer: 50, compressionRatio: 5)
        let compressor = try p.prefill(policy, cache: cache, chunk: 200, prompt: 500)
        // N = 500: buffer max(50, 100) = 100; ordinary heads keep 4 sinks + 1 compensation + 100.
        for l in 0..<2 {
            for m in 0..<2 {
                if l == 1 && m == 0 { XCTAssertEqual(cache.count(layer: l, head: m), 500); continue }
                XCTAssertEqual(cache.count(layer: l, head: m), 105)
                XCTAssertEqual(Double(cache.logCount(layer: l, head: m, row: 4)), log(396.0), accuracy: 1e-5)
                XCTAssertEqual(cache.positions(layer: l, head: m)[4], 399)
                // The compensation token is the mean of the dropped keys and values.
                let mean = (0..<shape.headDim).map { i in (4..<400).reduce(0) { $0 + p.key(l, $1, m)[i] } / 396 }
                assertClose(cache.key(layer: l, head: m, row: 4), mean, 1e-5, "compensation key")
                // Decode attention over the compressed head equals eq. 5 over the kept rows.
                let q = p.query(l, 499, 2 * m)
                let kept = Array(0..<4) + Array(400..<500)
                let keys = kept.prefix(4).map { p.key(l, $0, m) } + [mean] + kept.dropFirst(4).map { p.key(l, $0, m) }
                let vmean = (0..<shape.headDim).map { i in (4..<400).reduce(0) { $0 + p.value(l, $1, m)[i] } / 396 }
                let values = kept.prefix(4).map { p.value(l, $0, m) } + [vmean] + kept.dropFirst(4).map { p.value(l, $0, m) }
                let counts = keys.indices.map { $0 == 4 ? log(396.0) : 0 }
                var query = [Float](repeating: 0, count: shape.heads * shape.headDim)
                for h in 0..<shape.heads { for i in 0..<shape.headDim { query[h * shape.headDim + i] = Float(p.query(l, 499, h)[i]) } }
                let out = decode(cache, layer: l, query: query, heads: shape.heads)
                assertClose(Array(out[(2 * m * shape.headDim)..<((2 * m + 1) * shape.headDim)]),
                            naive(q, keys: keys, values: values, logCounts: counts), 2e-5, "eq. 5")
            }
        }
        // Decoding: entries leaving the buffer are folded in; ordinary heads stay at 105 entries.
        for t in 500..<700 { try p.decode(compressor, token: t) }
        XCTAssertEqual(cache.count(layer: 0, head: 0), 105)
        XCTAssertEqual(Double(cache.logCount(layer: 0, head: 0, row: 4)), log(596.0), accuracy: 1e-4)
        XCTAssertEqual(cache.count(layer: 1, head: 0), 700)
        // With the prefill schedule, ordinary heads grow again while decoding (golden-stick's deployment).
        let grow = p.makeCache()
        let c2 = try p.prefill(try RazorAttention(heads: heads, minimumBuffer: 50, schedule: .prefill), cache: grow, prompt: 500)
        for t in 500..<510 { try p.decode(c2, token: t) }
        XCTAssertEqual(grow.count(layer: 0, head: 0), 115)
    }

    func testRazorAttentionBudgetHoldsTheBytes() throws {
        let shape = SyntheticPrompt.shape(layers: 3, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 600, seed: 7)
        let ranked = [KVHeadIndex(layer: 2, head: 1), KVHeadIndex(layer: 0, head: 0), KVHeadIndex(layer: 1, head: 1)]
        let heads = try RazorHeads(heads: ranked)
        for fraction in [10, 25, 50] {
            let cache = p.makeCache(.f16)
            let budget = 6 * 600 * cache.bytesPerEntry * fraction / 100
            try p.prefill(try RazorAttention(heads: heads, budget: .bytes(budget)), cache: cache)
            XCTAssertLessThanOrEqual(cache.byteCount - cache.metadataBytes, budget, "\(fraction) %")
            // Every ordinary head holds the same number of entries; the budget is mostly used.
            let counts = (0..<3).flatMap { l in (0..<2).map { cache.count(layer: l, head: $0) } }
            XCTAssertGreaterThan(cache.byteCount - cache.metadataBytes, budget * 9 / 10, "\(fraction) %: \(counts)")
            let retrieval = ranked.filter { cache.count(layer: $0.layer, head: $0.head) == 600 }
            XCTAssertEqual(retrieval, Array(ranked.prefix(retrieval.count)), "retrieval heads are given up from the end")
            if fraction == 10 { XCTAssertTrue(retrieval.isEmpty, "\(counts)") }
            if fraction == 50 { XCTAssertEqual(retrieval.count, 2, "\(counts)") }
        }
    }
}

/// Q-filters: the dominant query direction, the file form, and the scorer.
final class QFilterTests: XCTestCase {
    func testFiltersFindThePlantedQueryDirection() throws {
        // Queries of a head's group = 3 u + noise (u a unit vector): the filter is -u; for a second
        // head with queries -2 v + noise, the orientation makes it +v.
        let d = 16
        var rng = SplitMix64(seed: 5)
        func unit() -> [Double] {
            let v = (0..<d).map { _ in Double.random(in: -1...1, using: &rng) }
            let n = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return v.map { $0 / n }
        }
        let (u, v) = (unit(), unit())
        var grams = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: d * d), count: 2), count: 1)
        var sums = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: d), count: 2), count: 1)
        for (m, (dir, scale)) in [(u, 3.0), (v, -2.0)].enumerated() {
            for _ in 0..<400 {
                let q = dir.map { $0 * scale + Double.random(in: -0.3...0.3, using: &rng) }
                for i in 0..<d {
                    sums[0][m][i] += q[i]
                    for j in 0..<d { grams[0][m][i * d + j] += q[i] * q[j] }
                }
            }
        }
        let filters = try QFilters(queryGrams: grams, querySums: sums)
        let f0 = filters.filter(layer: 0, head: 0).map(Double.init), f1 = filters.filter(layer: 0, head: 1).map(Double.init)
        XCTAssertLessThan(zip(f0, u).reduce(0) { $0 + $1.0 * $1.1 }, -0.99, "filter = -u")
        XCTAssertGreaterThan(zip(f1, v).reduce(0) { $0 + $1.0 * $1.1 }, 0.99, "queries along -v: filter = +v")
        // Text form round trip; a missing or wrong header is refused.
        XCTAssertEqual(try QFilters(tsv: filters.tsv, path: "f.tsv"), filters)
        XCTAssertThrowsError(try QFilters(tsv: filters.tsv.split(separator: "\n").dropFirst().joined(separator: "\n"), path: "f.tsv"))
        XCTAssertNoThrow(try QFilters(tsv: "# layers 1 kv_heads 2 head_dim 4\n1\t2\t3\t4\n1\t2\t3\t4\n", path: "f.tsv"))
        XCTAssertThrowsError(try QFilters(tsv: "# layers 1 kv_heads 2 head_dim 4\n1\t2\t3\t4\n1\t2\t3\t4\n1\t2\t3\t4\n", path: "f.tsv"))
        XCTAssertThrowsError(try QFilters(tsv: "# layers 1 kv_heads 2 head_dim 3\n1\t2\t3\t4\n1\t2\t3\t4\n", path: "f.tsv"))
        XCTAssertThrowsError(try QFilters(layers: 1, kvHeads: 1, headDim: 2, values: [1]))
    }

    func testScorerRanksKeysByTheirProjection() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2)
        let p = SyntheticPrompt(shape: shape, length: 60, seed: 8)
        var rng = SplitMix64(seed: 9)
        let values = (0..<(2 * 2 * shape.headDim)).map { _ in Float.random(in: -1...1, using: &rng) }
        let filters = try QFilters(layers: 2, kvHeads: 2, headDim: shape.headDim, values: values)
        let cache = p.makeCache()
        try p.prefill(try QFilter(filters: filters, budget: .compressionRatio(0.5)), cache: cache)
        for l in 0..<2 {
            for m in 0..<2 {
                let f = filters.filter(layer: l, head: m).map(Double.init)
                let scores = (0..<60).map { -dot(f, p.key(l, $0, m)) }
                let expected = (0..<60).sorted { scores[$0] > scores[$1] }.prefix(30).sorted()
                XCTAssertEqual(cache.positions(layer: l, head: m).map(Int.init), Array(expected), "\(l).\(m)")
            }
        }
        let wrong = try QFilters(layers: 1, kvHeads: 2, headDim: shape.headDim, values: Array(values[0..<(2 * shape.headDim)]))
        XCTAssertThrowsError(try p.prefill(try QFilter(filters: wrong, budget: .compressionRatio(0.5)), cache: p.makeCache()))
    }
}
