import Foundation
import XCTest
@testable import KVCompress

/// Deterministic SplitMix64 generator for reproducible synthetic data.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A synthetic prompt for one model: random keys, values and queries for every layer.
struct SyntheticPrompt {
    let shape: KVModelShape
    let length: Int
    var keys: [[Float]]        // [layer][t * kvHeads * d + m * d + i]
    var values: [[Float]]
    var queries: [[Float]]     // [layer][t * heads * d + h * d + i] (treated as post-RoPE)
    var preQueries: [[Float]]  // [layer] same layout (pre-RoPE)
    var positions: [Int32]

    init(shape: KVModelShape, length: Int, seed: UInt64, scale: Float = 1) {
        self.shape = shape
        self.length = length
        var rng = SplitMix64(seed: seed)
        func randoms(_ n: Int, _ s: Float) -> [Float] {
            (0..<n).map { _ in Float.random(in: -1...1, using: &rng) * s }
        }
        let kvFloats = length * shape.kvHeads * shape.headDim
        let qFloats = length * shape.heads * shape.headDim
        keys = (0..<shape.layers).map { _ in randoms(kvFloats, 2 * scale) }
        values = (0..<shape.layers).map { _ in randoms(kvFloats, scale) }
        queries = (0..<shape.layers).map { _ in randoms(qFloats, 2 * scale) }
        preQueries = (0..<shape.layers).map { _ in randoms(qFloats, 2 * scale) }
        positions = (0..<length).map { Int32($0) }
    }

    static func shape(layers: Int = 3, heads: Int = 4, kvHeads: Int = 2, headDim: Int = 32,
                      pairing: RoPEPairing = .neox, contextLength: Int? = nil) -> KVModelShape {
        let f = (0..<(headDim / 2)).map { Float(1.0 / pow(10000.0, Double(2 * $0) / Double(headDim))) }
        return try! KVModelShape(layers: layers, heads: heads, kvHeads: kvHeads, headDim: headDim,
                                 rope: try! RoPE(inverseFrequencies: f, pairing: pairing), contextLength: contextLength)
    }

    func makeCache(_ type: ElementType = .f32) -> KVCache {
        try! KVCache(layers: shape.layers, kvHeads: shape.kvHeads, headDim: shape.headDim, elementType: type)
    }

    /// Appends tokens `range` of every layer to the cache.
    func append(_ range: Range<Int>, to cache: KVCache) {
        let w = shape.kvHeads * shape.headDim
        for l in 0..<shape.layers {
            try! cache.append(layer: l, keys: Array(keys[l][(range.lowerBound * w)..<(range.upperBound * w)]),
                              values: Array(values[l][(range.lowerBound * w)..<(range.upperBound * w)]),
                              positions: Array(positions[range]))
        }
    }

    /// Runs a policy over the prompt in chunks (append a chunk to every layer, then the hook per
    /// layer), returning the compressor. With `columnSums`, the chunk's attention column sums are
    /// computed by `attendPrefill` and handed to the hook when the policy asks for them (what a
    /// real host does); without, policies probe the attention themselves.
    @discardableResult
    func prefill<P: KVCachePolicy>(_ policy: P, cache: KVCache, chunk: Int? = nil, prompt: Int? = nil,
                                   columnSums: Bool = false) throws -> KVCompressor {
        let compressor = try KVCompressor(policy: policy, cache: cache, shape: shape)
        try prefill(compressor, chunk: chunk, prompt: prompt, columnSums: columnSums)
        return compressor
    }

    /// The attention column sums of tokens `range` of layer `l` over the cache's rows, per KV head
    /// (the queries at `positions`, default the tokens' own positions).
    func columnSums(_ cache: KVCache, layer l: Int, tokens range: Range<Int>, positions: [Int32]? = nil,
                    pool: ThreadPool? = nil) -> [[Float]] {
        let qw = shape.heads * shape.headDim
        let rows = (0..<shape.kvHeads).map { cache.count(layer: l, head: $0) }
        let stride = rows.max() ?? 0
        let queryPositions = positions ?? Array(self.positions[range])
        var flat = [Float](repeating: .nan, count: shape.kvHeads * stride)
        var out = [Float](repeating: 0, count: range.count * qw)
        queries[l].withUnsafeBufferPointer { q in
            queryPositions.withUnsafeBufferPointer { p in
                flat.withUnsafeMutableBufferPointer { f in
                    cache.attendPrefill(layer: l, queries: q.baseAddress! + range.lowerBound * qw, queryCount: range.count,
                                        queryTokenStride: qw, queryPositions: p.baseAddress!,
                                        heads: shape.heads, output: &out, columnSums: f.baseAddress!,
                                        columnSumStride: stride, pool: pool)
                }
            }
        }
        return rows.indices.map { m in Array(flat[(m * stride)..<(m * stride + rows[m])]) }
    }

    /// Keys (or values) of tokens `range` of layer `l`, `[token][kvHead][headDim]`.
    func rows(_ table: [[Float]], layer l: Int, _ range: Range<Int>) -> [Float] {
        let w = shape.kvHeads * shape.headDim
        return Array(table[l][(range.lowerBound * w)..<(range.upperBound * w)])
    }

    /// Feeds tokens `from ..< prompt` (default the whole prompt) to the compressor as prompt chunks
    /// (positions from the compressor's steps), running the hooks on the synthetic queries; the
    /// last chunk ends the prompt. With `columnSums`, the chunk's attention column sums are
    /// computed by `attendPrefill` and handed to the hook when the policy asks for them (what a
    /// real host does); without, policies probe the attention themselves.
    func prefill(_ compressor: KVCompressor, chunk: Int? = nil, prompt: Int? = nil, from: Int = 0,
                 columnSums: Bool = false) throws {
        let length = prompt ?? self.length
        let c = chunk ?? length
        let qw = shape.heads * shape.headDim
        var start = from
        while start < length {
            let end = min(start + c, length)
            let step = try compressor.beginPrefill(tokenCount: end - start, endsPrompt: end == length)
            for l in 0..<shape.layers {
                try compressor.append(layer: l, step: step, keys: rows(keys, layer: l, start..<end),
                                      values: rows(values, layer: l, start..<end))
                let sums = columnSums && compressor.needsAttentionColumnSums
                    ? self.columnSums(compressor.cache, layer: l, tokens: start..<end, positions: step.positions) : nil
                try queries[l].withUnsafeBufferPointer { q in
                    try preQueries[l].withUnsafeBufferPointer { pq in
                        try compressor.afterAttention(layer: l, step: step, queries: q.baseAddress! + start * qw,
                                                      preRoPEQueries: pq.baseAddress! + start * qw,
                                                      attentionColumnSums: sums)
                    }
                }
            }
            start = end
        }
    }

    /// Decodes token `t` (its key and value appended at the position the cache assigns).
    func decode(_ compressor: KVCompressor, token t: Int) throws {
        let qw = shape.heads * shape.headDim
        let step = try compressor.beginDecode()
        for l in 0..<shape.layers {
            try compressor.append(layer: l, step: step, keys: rows(keys, layer: l, t..<(t + 1)),
                                  values: rows(values, layer: l, t..<(t + 1)))
            try queries[l].withUnsafeBufferPointer { q in
                try preQueries[l].withUnsafeBufferPointer { pq in
                    try compressor.afterAttention(layer: l, step: step, queries: q.baseAddress! + t * qw,
                                                  preRoPEQueries: pq.baseAddress! + t * qw)
                }
            }
        }
    }

    // MARK: - Naive double-precision references

    func key(_ l: Int, _ t: Int, _ m: Int) -> [Double] {
        let d = shape.headDim
        let o = (t * shape.kvHeads + m) * d
        return keys[l][o..<(o + d)].map(Double.init)
    }

    func value(_ l: Int, _ t: Int, _ m: Int) -> [Double] {
        let d = shape.headDim
        let o = (t * shape.kvHeads + m) * d
        return values[l][o..<(o + d)].map(Double.init)
    }

    func query(_ l: Int, _ t: Int, _ h: Int, pre: Bool = false) -> [Double] {
        let d = shape.headDim
        let o = (t * shape.heads + h) * d
        return (pre ? preQueries : queries)[l][o..<(o + d)].map(Double.init)
    }

    /// A^h[t, j] over the full (uncompressed) prompt, causal, in double.
    func attention(_ l: Int, h: Int, t: Int) -> [Double] {
        let m = h / shape.groupSize
        let q = query(l, t, h)
        let s = 1 / Double(shape.headDim).squareRoot()
        var z = (0...t).map { j in dot(q, key(l, j, m)) * s }
        let mx = z.max()!
        z = z.map { exp($0 - mx) }
        let sum = z.reduce(0, +)
        return z.map { $0 / sum } + Array(repeating: 0, count: length - t - 1)
    }
}

func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }

/// Builds a prefill context over the whole prompt for layer `l` (cache already filled), with the
/// attention column sums when `columnSums` is true.
func withContext<R>(_ p: SyntheticPrompt, cache: KVCache, layer l: Int, columnSums: Bool = false,
                    _ body: (KVLayerContext) throws -> R) rethrows -> R {
    let sums = columnSums ? p.columnSums(cache, layer: l, tokens: 0..<p.length) : nil
    let qw = p.shape.heads * p.shape.headDim
    return try p.queries[l].withUnsafeBufferPointer { q in
        try p.preQueries[l].withUnsafeBufferPointer { pq in
            try p.positions.withUnsafeBufferPointer { pos in
                let ctx = KVLayerContext(layer: l, shape: p.shape, phase: .prefill, queries: q.baseAddress!,
                                         preRoPEQueries: pq.baseAddress!, queryTokenStride: qw,
                                         positions: pos.baseAddress!, tokenCount: p.length, totalLength: p.length,
                                         isFirstChunk: true, isLastChunk: true, cache: cache, pool: nil,
                                         attentionColumnSums: sums)
                return try body(ctx)
            }
        }
    }
}

/// Asserts two score tables agree to a relative tolerance.
func assertScores(_ got: KVScores, _ want: [[Double]], rel: Double = 1e-4, abs: Double = 1e-6,
                  file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.heads.count, want.count, file: file, line: line)
    for m in want.indices {
        XCTAssertEqual(got.heads[m].count, want[m].count, "head \(m)", file: file, line: line)
        var worst = 0.0
        for j in want[m].indices {
            let err = Swift.abs(Double(got.heads[m][j]) - want[m][j])
            worst = max(worst, err / (Swift.abs(want[m][j]) * rel + abs))
        }
        XCTAssertLessThanOrEqual(worst, 1, "head \(m): error over tolerance", file: file, line: line)
    }
}

/// The `k` best rows of reference scores (ties: larger position), ascending.
func referenceTopK(_ s: [Double], _ k: Int) -> [Int] {
    Array(s.indices.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 > $1 }.prefix(k)).sorted()
}
