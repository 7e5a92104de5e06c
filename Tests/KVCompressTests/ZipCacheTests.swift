import KVCore
import XCTest
@testable import KVCompress

/// ZipCache caches: attention over a head's interleaved salient / unimportant parts and its f16
/// buffer against the same entries as f32 rows, quantization error by precision, no quantization of
/// quantized entries, exact bytes, eviction across the parts, the saliency split against an
/// independent double-precision computation of the normalized probe attention, decode blocks, and
/// what such caches refuse.
final class ZipCacheTests: XCTestCase {
    let kvHeads = 2, d = 64, heads = 6

    private func randomEntries(_ n: Int, _ rng: inout SplitMix64) -> (keys: [Float], values: [Float]) {
        let keys = (0..<(n * kvHeads * d)).map { i in Float.random(in: -2...2, using: &rng) * (i % d % 9 == 0 ? 5 : 1) }
        let values = (0..<(n * kvHeads * d)).map { i in Float.random(in: -1...1, using: &rng) * (i % d % 11 == 0 ? 4 : 1) }
        return (keys, values)
    }

    /// A one-layer ZipCache cache with 1500 entries: two blocks quantized with random splits (1000
    /// and 400 entries), 100 left in the buffer.
    private func quantizedCache(seed: UInt64) throws -> (KVCache, keys: [Float], values: [Float]) {
        let cache = try KVCache(layers: 1, kvHeads: kvHeads, headDim: d, keys: .zipCache, values: .zipCache)
        var rng = SplitMix64(seed: seed)
        let (keys, values) = randomEntries(1500, &rng)
        try cache.append(layer: 0, keys: keys, values: values, positions: (0..<1500).map(Int32.init))
        for block in [1000, 400] {
            for m in 0..<kvHeads {
                try cache.quantizeBlock(layer: 0, head: m, salient: (0..<block).map { _ in Int.random(in: 0..<5, using: &rng) < 3 })
            }
        }
        return (cache, keys, values)
    }

    /// The bytes the layout says: per salient entry 4-bit key codes, a q4_1 value row, its position
    /// and head row; per unimportant entry the same at 2 bits (q2_1); per block and precision one
    /// parameter row (f16 scale and min per channel) and end; per head with quantized entries its
    /// f32 channel scales; per buffered entry f16 key and value rows and a position; and the metadata.
    private func layoutBytes(_ cache: KVCache) -> Int {
        var total = cache.metadataBytes
        for l in 0..<cache.layers {
            for parts in cache.headParts(layer: l) {
                total += parts.last!.count * (2 * 2 * d + 4)
                for v in parts.dropLast() {
                    let bits = v.keyGroups!.bits
                    total += v.count * (d * bits / 8 + (bits == 4 ? ElementType.q4_1 : .q2_1).byteCount(elements: d) + 8)
                        + v.keyGroups!.groupCount * (4 * d + 4)
                }
                if parts.count > 1 { total += 4 * d }
            }
        }
        return total
    }

    /// Decode, prefill (with and without Λ windows) and observation over the three parts equal the
    /// same entries read back as f32 rows of one part: the parts' head rows, channel scales and
    /// merging are exact; what differs is the KIVI kernel's 16-bit fixed-point query (its documented
    /// rounding, about 1e-5 of a logit per unit of the query-times-scale range, which the 5x outlier
    /// channels here widen), hence 3e-4.
    func testAttentionOverInterleavedPartsMatchesTheEntriesAsRows() throws {
        let (cache, _, _) = try quantizedCache(seed: 3)
        // Evict across all three parts.
        for m in 0..<kvHeads {
            let n = cache.count(layer: 0, head: m)
            try cache.retain(layer: 0, head: m, indices: (0..<n).filter { ($0 * 5 + m) % 7 != 0 })
        }
        let parts = cache.headParts(layer: 0)
        XCTAssertTrue(parts.allSatisfy { $0.count == 3 && $0[0].headRows != nil && $0[1].headRows != nil })
        for m in 0..<kvHeads {
            let p = cache.positions(layer: 0, head: m)
            XCTAssertEqual(p, p.sorted(), "head rows ascend by position")
            XCTAssertEqual(p.count, Set(p).count)
        }
        let window = [KVAttentionWindow?](repeating: KVAttentionWindow(sinks: 10, recent: 300), count: kvHeads)
        CacheRows(cache).assertAttentionMatches(cache, heads: heads, positions: (0..<24).map { Int32(1500 - 60 * (24 - $0)) },
                                                tol: 3e-4, seed: 4, windows: [nil, window])  // queries between the blocks' entries
    }

    func testPrecisionsErrorsBytesAndNoSecondQuantization() throws {
        let (cache, keys, values) = try quantizedCache(seed: 8)
        XCTAssertEqual(cache.byteCount, layoutBytes(cache))
        XCTAssertEqual(cache.totalEntries, kvHeads * 1500)
        for m in 0..<kvHeads {
            let head = cache.head(0, m)
            XCTAssertEqual(head.packed.map(\.count).reduce(0, +), 1400)
            // Mean error per precision, against the appended f32 entries.
            var error = [[Double]](repeating: [0, 0], count: 2), count = [0, 0]
            for (i, part) in head.packed.enumerated() {
                for r in 0..<part.count {
                    let p = Int(part.positions[r])
                    let j = Int(part.headRows![r])
                    XCTAssertEqual(cache.positions(layer: 0, head: m)[j], Int32(p))
                    let k = cache.key(layer: 0, head: m, row: j), v = cache.value(layer: 0, head: m, row: j)
                    for c in 0..<d {
                        error[i][0] += Double(abs(k[c] - keys[(p * kvHeads + m) * d + c]))
                        error[i][1] += Double(abs(v[c] - values[(p * kvHeads + m) * d + c]))
                    }
                    count[i] += d
                }
            }
            let salient = error[0].map { $0 / Double(count[0]) }, unimportant = error[1].map { $0 / Double(count[1]) }
            XCTAssertLessThan(salient[0], unimportant[0] / 3, "4-bit keys err less than 2-bit keys")
            XCTAssertLessThan(salient[1], unimportant[1] / 3, "4-bit values err less than 2-bit values")
            XCTAssertLessThan(unimportant[0], 0.5)
            XCTAssertLessThan(unimportant[1], 0.4)
        }
        // Quantizing the buffer as one more block and evicting leave every other entry's bits alone.
        let before = (0..<1400).map { (cache.key(layer: 0, head: 1, row: $0), cache.value(layer: 0, head: 1, row: $0)) }
        try cache.quantizeBlock(layer: 0, head: 1, salient: (0..<100).map { $0 % 3 != 0 })
        XCTAssertEqual(cache.bufferedCount(layer: 0, head: 1), 0)
        for j in 0..<1400 {
            XCTAssertEqual(cache.key(layer: 0, head: 1, row: j), before[j].0)
            XCTAssertEqual(cache.value(layer: 0, head: 1, row: j), before[j].1)
        }
        XCTAssertEqual(cache.byteCount, layoutBytes(cache))
        let kept = (0..<1500).filter { $0 % 4 != 1 }
        try cache.retain(layer: 0, head: 1, indices: kept)
        for (j, old) in kept.enumerated() where old < 1400 {
            XCTAssertEqual(cache.key(layer: 0, head: 1, row: j), before[old].0)
            XCTAssertEqual(cache.value(layer: 0, head: 1, row: j), before[old].1)
        }
        try cache.remove(layer: 0, head: 1, rows: 100..<900)
        XCTAssertEqual(cache.count(layer: 0, head: 1), kept.count - 800)
        XCTAssertEqual(cache.positions(layer: 0, head: 1), (kept[..<100] + kept[900...]).map(Int32.init))
        XCTAssertEqual(cache.byteCount, layoutBytes(cache))
        XCTAssertLessThan(Double(cache.byteCount), 0.3 * Double(1500 * kvHeads * (4 * d + 4)), "a quarter of f16's bytes")
    }

    /// The prompt's split against an independent computation: probes (the last 5 % of positions and
    /// the seeded random ones), double-precision softmax over the f16 keys the buffer held, mass
    /// summed over probes and each group's query heads, divided by `L - position`; the lowest 40 %
    /// per head at 2 bits. A prompt prefilled in chunks gives the same split.
    func testPromptSaliencyIsTheNormalizedProbeAttention() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let prompt = SyntheticPrompt(shape: shape, length: 300, seed: 12)
        let settings = ZipCacheSettings()
        let length = 300
        let probes = (0..<length).filter { $0 >= length - 15 || settings.isRandomProbe($0) }
        XCTAssertGreaterThan(probes.count, 15)
        XCTAssertLessThan(probes.count, 45)
        let g = shape.heads / shape.kvHeads, hd = shape.headDim
        let scale = 1 / Double(hd).squareRoot()
        for chunk in [300, 128] {
            let cache = try KVCache(layers: 2, kvHeads: 2, headDim: hd, keys: .zipCache, values: .zipCache)
            try prompt.prefill(FullCache(), cache: cache, chunk: chunk)
            for l in 0..<2 {
                for m in 0..<2 {
                    var mass = [Double](repeating: 0, count: length)
                    for p in probes {
                        for h in (m * g)..<((m + 1) * g) {
                            let q = (0..<hd).map { Double(prompt.queries[l][(p * shape.heads + h) * hd + $0]) }
                            let logits = (0...p).map { j in
                                scale * (0..<hd).reduce(0.0) {
                                    $0 + q[$1] * Double(Float16(prompt.keys[l][(j * shape.kvHeads + m) * hd + $1]))
                                }
                            }
                            let top = logits.max()!
                            let e = logits.map { exp($0 - top) }
                            let total = e.reduce(0, +)
                            for j in 0...p { mass[j] += e[j] / total }
                        }
                    }
                    let score = (0..<length).map { mass[$0] / Double(length - $0) }
                    let order = score.indices.sorted { score[$0] < score[$1] }
                    let threshold = (score[order[119]] + score[order[120]]) / 2
                    let expected = Set(order[120...])
                    let head = cache.head(l, m)
                    let salient = Set((0..<head.packed[0].count).map { Int(head.packed[0].positions[$0]) })
                    XCTAssertEqual(salient.count, 180, "60 % salient")
                    XCTAssertEqual(head.packed[1].count, 120)
                    let differ = salient.symmetricDifference(expected)
                    XCTAssertTrue(differ.allSatisfy { abs(score[$0] - threshold) <= 1e-4 * threshold },
                                  "chunk \(chunk) layer \(l) head \(m): \(differ.count) entries differ away from the threshold")
                    XCTAssertEqual(cache.bufferedCount(layer: l, head: m), 0)
                }
            }
        }
    }

    /// Decode: entries wait in the buffer for `streamingGap` steps, then split by the step query's
    /// attention over them (the lowest 40 % at 2 bits) and are quantized as one block.
    func testDecodeQuantizesEachGapOfEntriesByTheStepsAttention() throws {
        let shape = SyntheticPrompt.shape(layers: 1, heads: 4, kvHeads: 2, headDim: 32)
        let prompt = SyntheticPrompt(shape: shape, length: 250, seed: 13)
        let settings = ZipCacheSettings(streamingGap: 50)
        let cache = try KVCache(layers: 1, kvHeads: 2, headDim: 32, keys: .zipCache, values: .zipCache, zipCache: settings)
        let compressor = try prompt.prefill(FullCache(), cache: cache, prompt: 150)
        let hd = shape.headDim, g = 2
        for t in 150..<199 { try prompt.decode(compressor, token: t) }
        XCTAssertEqual(cache.bufferedCount(layer: 0, head: 0), 49)
        // Reference for the 50th step: every entry as the cache holds it, plus the step's f16 key.
        let held = (0..<2).map { m in (0..<199).map { cache.key(layer: 0, head: m, row: $0) } }
        let before = (0..<2).map { m in (0..<150).map { cache.value(layer: 0, head: m, row: $0) } }
        try prompt.decode(compressor, token: 199)
        for m in 0..<2 {
            XCTAssertEqual(cache.bufferedCount(layer: 0, head: m), 0)
            let keys = held[m] + [(0..<hd).map { Float(Float16(prompt.keys[0][(199 * 2 + m) * hd + $0])) }]
            var mass = [Double](repeating: 0, count: 200)
            for h in (m * g)..<((m + 1) * g) {
                let q = (0..<hd).map { Double(prompt.queries[0][(199 * shape.heads + h) * hd + $0]) }
                let logits = keys.map { k in (0..<hd).reduce(0.0) { $0 + q[$1] * Double(k[$1]) } / Double(hd).squareRoot() }
                let top = logits.max()!
                let e = logits.map { exp($0 - top) }
                let total = e.reduce(0, +)
                for j in 0..<200 { mass[j] += e[j] / total }
            }
            let block = Array(150..<200)
            let order = block.sorted { mass[$0] < mass[$1] }
            let threshold = (mass[order[19]] + mass[order[20]]) / 2
            let head = cache.head(0, m)
            let salient = Set((0..<head.packed[0].count).map { Int(head.packed[0].positions[$0]) }.filter { $0 >= 150 })
            XCTAssertEqual(salient.count, 30)
            let differ = salient.symmetricDifference(Set(order[20...]))
            XCTAssertTrue(differ.allSatisfy { abs(mass[$0] - threshold) <= 1e-4 * threshold }, "head \(m): \(differ)")
            XCTAssertEqual(head.packed[0].groupCount, 3 + 1, "salient: 90 prompt entries in groups of 32, then 30")
            XCTAssertEqual(head.packed[1].groupCount, 2 + 1, "unimportant: 60, then 20")
            for j in 0..<150 { XCTAssertEqual(cache.value(layer: 0, head: m, row: j), before[m][j], "not quantized again") }
        }
        XCTAssertEqual(cache.positions(layer: 0, head: 1), (0..<200).map(Int32.init))
    }

    /// `MixedPrecision:SCORER` and `AdaMixedPrecision:SCORER` (``KVRepresentation/lowPrecision``):
    /// the 4-bit entries of each head are exactly the ones the same scorer and selector keep when
    /// they evict (Knorm's uniform share, AdaKV's head-adaptive shares over SnapKV), nothing is
    /// evicted, and a cache of another format refuses.
    func testScorersChooseThePrecisions() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)
        let prompt = SyntheticPrompt(shape: shape, length: 200, seed: 31)
        for (mixed, evicting) in [("MixedPrecision:Knorm", "Knorm"), ("AdaMixedPrecision:SnapKV", "AdaKV:SnapKV")] {
            let zip = try KVCache(layers: 2, kvHeads: 2, headDim: 32, keys: .zipCache, values: .zipCache)
            try prompt.prefill(try KVPolicyCatalog.make(mixed, budget: .compressionRatio(0.4)), cache: zip, chunk: 64)
            let f16 = prompt.makeCache(.f16)
            try prompt.prefill(try KVPolicyCatalog.make(evicting, budget: .compressionRatio(0.4)), cache: f16, chunk: 64)
            var shares = Set<Int>()
            for l in 0..<2 {
                for m in 0..<2 {
                    let head = zip.head(l, m)
                    XCTAssertEqual(zip.count(layer: l, head: m), 200, "\(mixed): nothing evicted")
                    let salient = (0..<head.packed[0].count).map { Int(head.packed[0].positions[$0]) }
                    XCTAssertEqual(salient, f16.keptPositions(layer: l)[m], "\(mixed) layer \(l) head \(m)")
                    XCTAssertEqual(head.packed[1].count, 200 - salient.count)
                    shares.insert(salient.count)
                }
            }
            if mixed.hasPrefix("Ada") { XCTAssertGreaterThan(shares.count, 1, "head-adaptive shares") }
        }
        XCTAssertThrowsError(try prompt.prefill(try KVPolicyCatalog.make("MixedPrecision:Knorm", budget: .compressionRatio(0.4)),
                                                cache: prompt.makeCache(.f16))) {
            XCTAssertTrue("\($0)".contains("zipcache"), "\($0)")
        }
    }

    func testRefusals() throws {
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 64, keys: .zipCache, values: .rows(.f16))) {
            XCTAssertTrue("\($0)".contains("zipcache on both sides"), "\($0)")
        }
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 48, keys: .zipCache, values: .zipCache))
        for bad in [ZipCacheSettings(unimportantRatio: 1.5), ZipCacheSettings(streamingGap: 0), ZipCacheSettings(probeFraction: 0)] {
            XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 64, keys: .zipCache, values: .zipCache, zipCache: bad))
        }
        let (cache, _, _) = try quantizedCache(seed: 1)
        let rope = try RoPE(inverseFrequencies: [Float](repeating: 0.5, count: d / 2), pairing: .neox)
        XCTAssertThrowsError(try cache.merge(layer: 0, head: 0, rows: 0..<4)) { XCTAssertTrue("\($0)".contains("zipcache")) }
        XCTAssertThrowsError(try cache.setValues(layer: 0, head: 0, rows: 0..<1, values: [Float](repeating: 0, count: d)))
        XCTAssertThrowsError(try cache.reposition(layer: 0, head: 0, to: (0..<Int32(cache.count(layer: 0, head: 0))).map { $0 },
                                                  rope: rope))
        XCTAssertEqual(cache.count(layer: 0, head: 0), 1500, "nothing changed")
        XCTAssertThrowsError(try cache.quantizeBlock(layer: 0, head: 0, salient: [Bool](repeating: true, count: 101)))
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 64, keys: .kivi(bits: 2), values: .kivi(bits: 2))
            .quantizeBlock(layer: 0, head: 0, salient: []))
        XCTAssertEqual(KVEntryFormat(name: "ZipCache"), .zipCache)
    }
}
