import KVCore
import XCTest
@testable import KVCompress

/// ThinK: the kept key channels against an independent double-precision transcription of the
/// score, pruned keys read back as the original keys with the dropped channels zeroed, attention
/// over the pruned part against those keys as f32 rows, exact bytes, eviction across the pruned
/// part and the rows, and what pruned caches refuse.
final class ThinKTests: XCTestCase {
    let shape = SyntheticPrompt.shape(layers: 2, heads: 6, kvHeads: 2, headDim: 64)

    /// The channels a double-precision transcription keeps: per KV head, query energy of the last
    /// `w` prompt queries (group and window means of q_c^2) times the key energy of all entries,
    /// the lowest `Int(d * ratio)` dropped.
    private func referenceChannels(_ p: SyntheticPrompt, layer l: Int, head m: Int, ratio: Double, window w: Int,
                                   keys: (Int, Int) -> Double) -> [Int] {
        let d = shape.headDim, g = shape.heads / shape.kvHeads, n = p.length
        let score = (0..<d).map { c -> Double in
            var qe = 0.0
            for t in (n - w)..<n {
                for h in (m * g)..<((m + 1) * g) {
                    let q = Double(p.queries[l][(t * shape.heads + h) * d + c])
                    qe += q * q
                }
            }
            let ke = (0..<n).reduce(0.0) { $0 + keys($1, c) * keys($1, c) }
            return qe / Double(w * g) * ke / Double(n)
        }
        let dropped = Set((0..<d).sorted { score[$0] < score[$1] }.prefix(Int(Double(d) * ratio)))
        return (0..<d).filter { !dropped.contains($0) }
    }

    func testPrunedKeysAreTheKeptChannelsOfTheKeys() throws {
        var prompt = SyntheticPrompt(shape: shape, length: 300, seed: 41)
        // Channels of very different energies, so that the ranking is far from ties.
        for l in 0..<2 {
            for i in prompt.keys[l].indices { prompt.keys[l][i] *= Float(1 + (i % 64) % 13) / 4 }
        }
        let d = shape.headDim
        for (ratio, chunk, recent) in [(0.5, 300, 0), (0.25, 128, 32)] {
            let cache = prompt.makeCache(.f32)
            let compressor = try prompt.prefill(try ThinK(keyChannelRatio: ratio, recentEntries: recent), cache: cache, chunk: chunk)
            XCTAssertEqual(compressor.policy.name, "ThinK")
            for l in 0..<2 {
                for m in 0..<2 {
                    let head = cache.head(l, m)
                    let expected = referenceChannels(prompt, layer: l, head: m, ratio: ratio, window: 32) { j, c in
                        Double(prompt.keys[l][(j * 2 + m) * d + c])
                    }
                    XCTAssertEqual(head.prunedCount, 300 - recent)
                    XCTAssertEqual(cache.count(layer: l, head: m), 300)
                    XCTAssertEqual(cache.positions(layer: l, head: m), (0..<300).map(Int32.init))
                    let view = head.views()[0]
                    XCTAssertEqual((0..<view.keyChannelCount).map { Int(view.keyChannels![$0]) }, expected,
                                   "ratio \(ratio) layer \(l) head \(m)")
                    for j in [0, 150, 299 - recent, 299] {
                        let original = (0..<d).map { prompt.keys[l][(j * 2 + m) * d + $0] }
                        let want = j < 300 - recent ? (0..<d).map { expected.contains($0) ? original[$0] : 0 } : original
                        XCTAssertEqual(cache.key(layer: l, head: m, row: j), want, "row \(j)")
                        XCTAssertEqual(cache.value(layer: l, head: m, row: j), (0..<d).map { prompt.values[l][(j * 2 + m) * d + $0] })
                    }
                }
            }
            // Bytes: pruned f32 rows hold the kept channels, whole values and positions, and each head its channel list.
            let kept = d - Int(Double(d) * ratio)
            let expectedBytes = 2 * 2 * ((300 - recent) * (4 * kept + 4 * d + 4) + 4 * kept + recent * (8 * d + 4)) + cache.metadataBytes
            XCTAssertEqual(cache.byteCount, expectedBytes)
        }
    }

    /// Decode, prefill and observation over a pruned part and the rows after it equal the same
    /// entries (pruned keys with zeros) as one f32 part; eviction across both parts keeps entries.
    func testAttentionOverPrunedKeysMatchesZeroedKeys() throws {
        let prompt = SyntheticPrompt(shape: SyntheticPrompt.shape(layers: 1, heads: 6, kvHeads: 2, headDim: 64), length: 400, seed: 43)
        let cache = prompt.makeCache(.f16)
        let compressor = try prompt.prefill(try ThinK(keyChannelRatio: 0.5), cache: cache, prompt: 350)
        for t in 350..<400 { try prompt.decode(compressor, token: t) }
        for m in 0..<2 {
            let n = cache.count(layer: 0, head: m)
            let before = (0..<n).map { cache.key(layer: 0, head: m, row: $0) }
            let kept = (0..<n).filter { ($0 * 3 + m) % 4 != 0 }
            try cache.retain(layer: 0, head: m, indices: kept)
            try cache.remove(layer: 0, head: m, rows: 10..<30)
            let survivors = Array(kept[..<10] + kept[30...])
            for (j, old) in survivors.enumerated() { XCTAssertEqual(cache.key(layer: 0, head: m, row: j), before[old]) }
            XCTAssertEqual(cache.head(0, m).views().count, 2)
        }
        XCTAssertTrue(cache.headParts(layer: 0).allSatisfy { $0.count == 2 && $0[0].keyChannels != nil })
        CacheRows(cache).assertAttentionMatches(cache, heads: 6, positions: (0..<12).map { Int32(250 + 12 * $0) }, tol: 2e-5, seed: 44)
    }

    func testRefusals() throws {
        for bad in [0.0, 1.0, -0.1] { XCTAssertThrowsError(try ThinK(keyChannelRatio: bad)) }
        XCTAssertThrowsError(try ThinK(keyChannelRatio: 0.5, windowSize: 0))
        XCTAssertEqual((try KVPolicyCatalog.make("ThinK", budget: .tokens(64)) as? ThinK)?.keyChannelRatio, 0.5,
                       "a token budget does not apply: half of the channels")
        XCTAssertThrowsError(try KVPolicyCatalog.make("ThinK", budget: .compressionRatio(0)))
        let prompt = SyntheticPrompt(shape: shape, length: 100, seed: 45)
        let kivi = try KVCache(layers: 2, kvHeads: 2, headDim: 64, keys: .kivi(bits: 4), values: .kivi(bits: 4))
        XCTAssertThrowsError(try prompt.prefill(try ThinK(keyChannelRatio: 0.5), cache: kivi)) {
            XCTAssertTrue("\($0)".contains("row format"), "\($0)")
        }
        let cache = prompt.makeCache(.f16)
        try prompt.prefill(try KVPolicyCatalog.make("ThinK", budget: .compressionRatio(0.5)), cache: cache)
        let rope = shape.rope!
        XCTAssertThrowsError(try cache.reposition(layer: 0, head: 0, to: (0..<100).map(Int32.init), rope: rope))
        XCTAssertThrowsError(try cache.merge(layer: 0, head: 0, rows: 0..<4))
        XCTAssertThrowsError(try cache.pruneKeyChannels(layer: 0, head: 0, keeping: [0, 1], rows: 0), "pruned once")
        let fresh = prompt.makeCache(.q8_0)
        prompt.append(0..<10, to: fresh)
        XCTAssertThrowsError(try fresh.pruneKeyChannels(layer: 0, head: 0, keeping: Array(0..<40), rows: 5), "q8_0 blocks of 32")
        XCTAssertThrowsError(try fresh.pruneKeyChannels(layer: 0, head: 0, keeping: [3, 2], rows: 5))
        XCTAssertThrowsError(try fresh.pruneKeyChannels(layer: 0, head: 0, keeping: [0, 64], rows: 5))
        XCTAssertThrowsError(try fresh.pruneKeyChannels(layer: 0, head: 0, keeping: Array(0..<32), rows: 11))
        XCTAssertNoThrow(try fresh.pruneKeyChannels(layer: 0, head: 0, keeping: Array(0..<32), rows: 5))
        XCTAssertEqual(fresh.count(layer: 0, head: 0), 10)
    }
}
