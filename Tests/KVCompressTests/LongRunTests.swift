import XCTest
@testable import KVCompress

/// Rolling policies on an endless stream: 100,000 decode steps through the compressor (synthetic
/// keys and values, no model), checking that the cache's bytes stay bounded.
final class LongRunTests: XCTestCase {
    func testCacheStaysBoundedOverAHundredThousandDecodeSteps() throws {
        // The re-positioning run has a context length to stay below; the others take original
        // positions on an unbounded shape.
        let bounded = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32, contextLength: 4096)
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let kv = shape.kvHeads * shape.headDim, qw = shape.heads * shape.headDim
        var rng = SplitMix64(seed: 21)
        let keys = (0..<(64 * kv)).map { _ in Float.random(in: -1...1, using: &rng) }
        let queries = (0..<qw).map { _ in Float.random(in: -1...1, using: &rng) }
        for (name, policy, capacity) in [
            ("StreamingLLM re-positioned", try StreamingLLM(sinks: 4, window: 60, repositionKeys: true) as any KVCachePolicy, 64),
            ("StreamingLLM", try StreamingLLM(sinks: 4, window: 60), 64),
            ("H2O", try H2O(budget: .tokens(64)), 64),
        ] {
            let reposition = name.contains("re-positioned")
            let compressor = try KVCompressor(policy: policy, shape: reposition ? bounded : shape, cacheType: .f16, pool: nil)
            let cache = compressor.cache
            var maxBytes = 0, maxAllocated = 0, allocatedAt1000 = 0
            for step in 0..<100_000 {
                let s = try compressor.beginDecode()
                let row = (step % 64) * kv
                for l in 0..<shape.layers {
                    try compressor.append(layer: l, step: s, keys: Array(keys[row..<(row + kv)]), values: Array(keys[row..<(row + kv)]))
                    try compressor.afterAttention(layer: l, step: s, queries: queries, preRoPEQueries: nil,
                                                  attentionColumnSums: policy.needsAttentionColumnSums
                                                      ? (0..<shape.kvHeads).map { [Float](repeating: 0.1, count: cache.count(layer: l, head: $0)) }
                                                      : nil)
                }
                maxBytes = max(maxBytes, cache.byteCount)
                maxAllocated = max(maxAllocated, cache.allocatedByteCount)
                if step == 1000 { allocatedAt1000 = cache.allocatedByteCount }
            }
            let window = shape.layers * shape.kvHeads * capacity * cache.bytesPerEntry + cache.metadataBytes
            XCTAssertLessThanOrEqual(maxBytes, window, name)
            XCTAssertLessThanOrEqual(cache.peakByteCount, window + shape.layers * shape.kvHeads * cache.bytesPerEntry, name)
            // Allocations: capacity with growth headroom, no growth after the first thousand steps.
            XCTAssertLessThanOrEqual(maxAllocated, 2 * window, name)
            XCTAssertEqual(cache.allocatedByteCount, allocatedAt1000, name)
            XCTAssertEqual(compressor.processedTokens, 100_000)
            XCTAssertEqual(cache.nextPosition <= 4096, reposition, name)
        }
    }
}
