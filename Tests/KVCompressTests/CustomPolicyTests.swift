import XCTest
import KVCompress

// The custom policy of the "Writing a custom policy" article, verbatim: keep the first `sinks`
// entries and, among the others, the ones whose values have the largest L2 norm.

/// Scores entries by the L2 norm of their values; the first `sinks` rows always rank first.
struct ValueNormScorer: KVStatelessScorer {
    var sinks = 4

    func scores(_ context: KVLayerContext) -> KVScores {
        let cache = context.cache
        return KVScores(heads: (0..<context.shape.kvHeads).map { head in
            (0..<context.count(head: head)).map { row in
                if row < sinks { return .infinity }
                let v = cache.value(layer: context.layer, head: head, row: row)
                return v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            }
        })
    }
}

/// Value-norm eviction after the prompt, with any budget.
struct ValueNormPolicy: KVScoredPolicy {
    let scorer = ValueNormScorer()
    let selector: UniformSelector

    init(budget: KVBudget) throws(KVError) {
        selector = try UniformSelector(budget: budget)
    }
}

final class CustomPolicyTests: XCTestCase {
    func testUserWrittenPolicy() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 50, seed: 12)
        let cache = p.makeCache()
        try p.prefill(ValueNormPolicy(budget: .compressionRatio(0.6)), cache: cache)
        for l in 0..<2 {
            for m in 0..<2 {
                let ref = (0..<50).map { $0 < 4 ? Double.infinity : norm(p.value(l, $0, m)) }
                XCTAssertEqual(cache.keptPositions(layer: l)[m], referenceTopK(ref, 20))
            }
        }
        XCTAssertThrowsError(try ValueNormPolicy(budget: .compressionRatio(2)))
    }
}

final class CompressLayerTests: XCTestCase {
    /// `compressLayer` on one layer gives the same kept positions as the full compressor run.
    func testCompressLayerMatchesCompressor() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 70, seed: 13)
        let viaCompressor = p.makeCache()
        try p.prefill(SnapKV(compressionRatio: 0.5, window: 8), cache: viaCompressor)
        let direct = p.makeCache()
        p.append(0..<70, to: direct)
        for l in 0..<2 {
            let kept = try withContext(p, cache: direct, layer: l) { ctx in
                try SnapKV(compressionRatio: 0.5, window: 8).compressLayer(ctx)
            }
            XCTAssertEqual(kept, viaCompressor.keptPositions(layer: l))
        }
    }
}

/// A cross-layer policy: after the prompt, keep a global number of entries across all layers and
/// heads by Knorm score (one ranking for the whole cache), through the afterPrompt hook.
struct GlobalKnorm: KVCachePolicy {
    let totalEntries: Int

    func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {}

    func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout KVNoState, pool: ThreadPool?) throws(KVError) {
        var all: [(score: Float, layer: Int, head: Int, row: Int)] = []
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                for j in 0..<cache.count(layer: l, head: m) {
                    let k = cache.key(layer: l, head: m, row: j)
                    all.append((-k.reduce(0) { $0 + $1 * $1 }.squareRoot(), l, m, j))
                }
            }
        }
        let kept = all.sorted { $0.score > $1.score }.prefix(totalEntries)
        for l in 0..<shape.layers {
            for m in 0..<shape.kvHeads {
                try cache.retain(layer: l, head: m, indices: kept.filter { $0.layer == l && $0.head == m }.map(\.row))
            }
        }
    }
}

final class CrossLayerPolicyTests: XCTestCase {
    func testAfterPromptHookSeesEveryLayer() throws {
        let shape = SyntheticPrompt.shape(layers: 3, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 40, seed: 14)
        let cache = p.makeCache()
        // Chunks: the cross-layer hook runs once, after the last layer of the chunk ending the prompt.
        let c = try p.prefill(GlobalKnorm(totalEntries: 50), cache: cache, chunk: 16, prompt: 32)
        XCTAssertEqual(cache.totalEntries, 50)
        try p.prefill(c, prompt: 40, from: 32)
        XCTAssertEqual(cache.totalEntries, 50)
        var all: [Double] = []
        for l in 0..<3 { for m in 0..<2 { for t in 0..<40 { all.append(-norm(p.key(l, t, m))) } } }
        // The second prompt's hook ranked the 50 survivors of the first with tokens 32..<40.
        let threshold = all.sorted(by: >)[49]
        for l in 0..<3 {
            for m in 0..<2 {
                for t in cache.keptPositions(layer: l)[m] { XCTAssertGreaterThanOrEqual(-norm(p.key(l, t, m)), threshold - 1e-5) }
            }
        }
    }
}

/// A scorer with a bug: one score too few for every head.
struct ShortScorer: KVStatelessScorer {
    func scores(_ context: KVLayerContext) -> KVScores {
        KVScores(heads: (0..<context.shape.kvHeads).map { [Float](repeating: 1, count: max(0, context.count(head: $0) - 1)) })
    }
}

/// A selector with a bug: keeps a row that does not exist.
struct OutOfRangeSelector: KVSelector {
    func select(_ scores: KVScores, context: KVLayerContext) -> [[Int]?] {
        (0..<context.shape.kvHeads).map { [0, context.count(head: $0)] }
    }
}

final class CustomPolicyErrorTests: XCTestCase {
    /// Mistakes in user-written scorers and selectors are typed errors that say what was wrong,
    /// not traps, and they leave the cache as it was.
    func testWrongScoreCountsAndRowsAreTypedErrors() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let p = SyntheticPrompt(shape: shape, length: 30, seed: 19)
        let cache = p.makeCache()
        XCTAssertThrowsError(try p.prefill(ScoredPolicy(scorer: ShortScorer(), selector: UniformSelector(budget: .tokens(8))),
                                           cache: cache)) { error in
            guard case KVError.shapeMismatch(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("ShortScorer returned 29 scores for KV head 0 of layer 0, which holds 30 entries"), message)
        }
        XCTAssertEqual(cache.count(layer: 0, head: 0), 30)
        let other = p.makeCache()
        XCTAssertThrowsError(try p.prefill(ScoredPolicy(scorer: KnormScorer(), selector: OutOfRangeSelector()), cache: other)) { error in
            guard case KVError.invalidParameter(let name, let value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual([name, value], ["row index", "30"])
        }
        XCTAssertEqual(other.count(layer: 0, head: 0), 30)
        XCTAssertThrowsError(try KVSelection.topK(scores: [1, 2, 3], positions: [0, 1], k: 1)) {
            guard case KVError.shapeMismatch = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try cache.retain(layer: 0, head: 0, indices: [1, 1])) {
            guard case KVError.invalidParameter = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try cache.remove(layer: 5, head: 0, rows: 0..<1))
    }
}
