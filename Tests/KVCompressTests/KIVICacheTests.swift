import KVCore
import XCTest
@testable import KVCompress

/// KIVI caches: the residual's semantics, exact byte accounting, attention over the two parts of a
/// head against the same entries as f32 rows, eviction across both parts, and what they refuse.
final class KIVICacheTests: XCTestCase {
    let layers = 2, kvHeads = 2, d = 64, heads = 6
    let group = KVCache.kiviGroupSize

    /// Appends `tokens` random entries to every layer after the ones it holds, in chunks of the
    /// given sizes (cycled), compacting the residual after each as `KVCompressor` does.
    private func fill(_ cache: KVCache, tokens: Int, chunks: [Int], seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var start = cache.nextPosition, c = 0
        let end = start + tokens
        while start < end {
            let n = min(chunks[c % chunks.count], end - start)
            c += 1
            let width = n * kvHeads * d
            let keys = (0..<width).map { i in Float.random(in: -2...2, using: &rng) * (i % d % 7 == 0 ? 6 : 1) }
            let values = (0..<width).map { _ in Float.random(in: -1...1, using: &rng) }
            for l in 0..<layers {
                try cache.append(layer: l, keys: keys, values: values, positions: (start..<(start + n)).map(Int32.init))
                cache.compactResidual(layer: l)
            }
            start += n
        }
    }

    /// The bytes the layout says a head holds: quantized entries (codes, value row, position), one
    /// parameter row and end per group, and the residual's f16 rows with positions.
    private func layoutBytes(_ cache: KVCache, bits: Int) -> Int {
        var total = cache.metadataBytes
        let value = (bits == 2 ? ElementType.q2_1 : .q4_1).byteCount(elements: d)
        for l in 0..<layers {
            for parts in cache.headParts(layer: l) {
                let packed = parts.count == 2 ? parts[0] : nil
                let rows = parts.last!
                total += rows.count * (2 * 2 * d + 4)
                if let packed {
                    total += packed.count * (d * bits / 8 + value + 4) + packed.keyGroups!.groupCount * (4 * d + 4)
                }
            }
        }
        return total
    }

    func testResidualKeepsTheNewestEntriesAndBytesAreExact() throws {
        for bits in [2, 4] {
            let cache = try KVCache(layers: layers, kvHeads: kvHeads, headDim: d, keys: .kivi(bits: bits),
                                    values: .kivi(bits: bits))
            XCTAssertEqual(cache.residualLength, 128)
            try fill(cache, tokens: 700, chunks: [1, 7, 150, 1, 64, 300, 5, 1, 1], seed: 5)
            for l in 0..<layers {
                for (m, parts) in cache.headParts(layer: l).enumerated() {
                    XCTAssertEqual(parts.count, 2)
                    let residual = parts[1].count
                    XCTAssertGreaterThanOrEqual(residual, 128)
                    XCTAssertLessThan(residual, 128 + group)
                    XCTAssertEqual(parts[0].count % group, 0)
                    XCTAssertEqual(parts[0].count + residual, 700)
                    XCTAssertEqual(parts[0].keyGroups?.groupCount, parts[0].count / group)
                    XCTAssertEqual(cache.positions(layer: l, head: m), (0..<700).map(Int32.init))
                }
            }
            XCTAssertEqual(cache.byteCount, layoutBytes(cache, bits: bits))
            XCTAssertEqual(cache.totalEntries, layers * kvHeads * 700)
            // Long sequences approach bytesPerEntry per entry.
            let perEntry = d * bits / 8 + (bits == 2 ? 24 : 40) + 4 + (4 * d + 4 + group - 1) / group
            XCTAssertEqual(cache.bytesPerEntry, perEntry)
        }
    }

    func testShortSequencesStayInFullPrecision() throws {
        let cache = try KVCache(layers: layers, kvHeads: kvHeads, headDim: d, keys: .kivi(bits: 2), values: .kivi(bits: 2))
        try fill(cache, tokens: 128 + group - 1, chunks: [50], seed: 9)
        XCTAssertEqual(cache.headParts(layer: 0)[0].count, 1, "no group leaves a residual of R + G - 1")
        let f32 = try KVCache(layers: layers, kvHeads: kvHeads, headDim: d, keys: .rows(.f16), values: .rows(.f16))
        try fill(f32, tokens: 128 + group - 1, chunks: [50], seed: 9)
        XCTAssertEqual(cache.byteCount, f32.byteCount, "the residual is f16 rows")
    }

    /// Decode, prefill and observation over the two parts equal the same entries read back as f32
    /// rows of one part (the parts are merged exactly; only the summation order differs).
    func testAttentionOverPartsMatchesTheEntriesAsRows() throws {
        for format in [KVEntryFormat.kivi(bits: 2), .kivi(bits: 4)] {
            let cache = try KVCache(layers: 1, kvHeads: kvHeads, headDim: d, keys: format, values: format)
            var rng = SplitMix64(seed: 21)
            let total = 1500
            let keys = (0..<(total * kvHeads * d)).map { _ in Float.random(in: -2...2, using: &rng) }
            let values = (0..<(total * kvHeads * d)).map { _ in Float.random(in: -1...1, using: &rng) }
            try cache.append(layer: 0, keys: keys, values: values, positions: (0..<Int32(total)).map { $0 })
            cache.compactResidual(layer: 0)
            // Evict across both parts so that groups are ragged.
            for m in 0..<kvHeads {
                let n = cache.count(layer: 0, head: m)
                try cache.retain(layer: 0, head: m, indices: (0..<n).filter { ($0 * 7 + m) % 5 != 0 })
            }
            XCTAssertTrue(cache.headParts(layer: 0).allSatisfy { $0.count == 2 })
            CacheRows(cache).assertAttentionMatches(cache, heads: heads, positions: (0..<20).map { Int32(total - 40 + 2 * $0) },
                                                    tol: 2e-5, seed: 21)
        }
    }

    func testEvictionAcrossPartsKeepsEntriesExactly() throws {
        let cache = try KVCache(layers: layers, kvHeads: kvHeads, headDim: d, keys: .kivi(bits: 2), values: .kivi(bits: 4))
        try fill(cache, tokens: 600, chunks: [600], seed: 33)
        var rng = SplitMix64(seed: 34)
        for step in 0..<6 {
            let n = cache.count(layer: 1, head: 0)
            let before = (0..<n).map { (cache.positions(layer: 1, head: 0)[$0], cache.key(layer: 1, head: 0, row: $0),
                                        cache.value(layer: 1, head: 0, row: $0)) }
            var kept: [Int]
            if step % 2 == 0 {
                kept = (0..<n).filter { _ in Int.random(in: 0..<3, using: &rng) != 0 }
                try cache.retain(layer: 1, head: 0, indices: kept.shuffled(using: &rng))
            } else {
                let cut = (n / 4)..<(n / 4 + n / 3)  // straddles the quantized part and the residual
                kept = (0..<n).filter { !cut.contains($0) }
                try cache.remove(layer: 1, head: 0, rows: cut)
            }
            XCTAssertEqual(cache.count(layer: 1, head: 0), kept.count)
            for (j, old) in kept.enumerated() {
                XCTAssertEqual(cache.positions(layer: 1, head: 0)[j], before[old].0)
                XCTAssertEqual(cache.key(layer: 1, head: 0, row: j), before[old].1, "key \(j) unchanged by eviction")
                XCTAssertEqual(cache.value(layer: 1, head: 0, row: j), before[old].2)
            }
            XCTAssertEqual(cache.byteCount, mixedLayoutBytes(cache))
        }
        // New entries still flow through the residual into new groups.
        try fill(cache, tokens: 100, chunks: [1], seed: 1)
        XCTAssertEqual(cache.byteCount, mixedLayoutBytes(cache))
        XCTAssertLessThan(cache.byteCount, try fullF16Bytes(entries: cache.totalEntries))
    }

    private func mixedLayoutBytes(_ cache: KVCache) -> Int {
        var total = cache.metadataBytes
        for l in 0..<layers {
            for parts in cache.headParts(layer: l) {
                total += parts.last!.count * (2 * 2 * d + 4)
                if parts.count == 2 {
                    total += parts[0].count * (d * 2 / 8 + ElementType.q4_1.byteCount(elements: d) + 4)
                        + parts[0].keyGroups!.groupCount * (4 * d + 4)
                }
            }
        }
        return total
    }

    private func fullF16Bytes(entries: Int) throws -> Int {
        entries * (4 * d + 4) + layers * kvHeads * KVCache.metadataBytesPerHead
    }

    /// A byte budget never lets a KIVI cache hold more than the budget, whatever the length (the
    /// f16 residual counted at its largest), and approaches it for long sequences.
    func testByteBudgetsHoldKIVICachesUnderTheBudget() throws {
        for bits in [2, 4] {
            let probe = try KVCache(layers: 1, kvHeads: 1, headDim: d, keys: .kivi(bits: bits), values: .kivi(bits: bits))
            for headBytes in [1_000, 30_000, 41_000, 200_000, 2_000_000] {
                let n = probe.entryCount(forHeadBytes: headBytes)
                let cache = try KVCache(layers: 1, kvHeads: 1, headDim: d, keys: .kivi(bits: bits), values: .kivi(bits: bits))
                for start in stride(from: 0, to: n, by: 1) {  // one entry at a time: the residual at every size
                    let keys = (0..<d).map { Float(($0 * 7 + start) % 13) - 6 }
                    try cache.append(layer: 0, keys: keys, values: keys, positions: [Int32(start)])
                    cache.compactResidual(layer: 0)
                    XCTAssertLessThanOrEqual(cache.byteCount - cache.metadataBytes, headBytes, "kivi\(bits) \(headBytes) B at \(start + 1)")
                    if cache.byteCount - cache.metadataBytes > headBytes { break }
                }
                if headBytes >= 200_000 {
                    XCTAssertGreaterThan(Double(cache.byteCount - cache.metadataBytes), 0.9 * Double(headBytes), "kivi\(bits) uses its budget")
                }
            }
        }
    }

    func testRefusals() throws {
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 48, keys: .kivi(bits: 2), values: .rows(.f16)))
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 64, keys: .kivi(bits: 3), values: .rows(.f16)))
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 64, keys: .kivi(bits: 2), values: .kivi(bits: 2),
                                         residualLength: -1))
        let cache = try KVCache(layers: layers, kvHeads: kvHeads, headDim: d, keys: .kivi(bits: 4), values: .kivi(bits: 4))
        try fill(cache, tokens: 300, chunks: [300], seed: 3)
        let rope = try RoPE(headDim: d, base: 10_000, pairing: .neox)
        let n = cache.count(layer: 0, head: 0)
        XCTAssertThrowsError(try cache.reposition(layer: 0, head: 0, to: (0..<Int32(n)).map { $0 + 1 }, rope: rope)) { error in
            guard case KVError.invalidState(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("KIVI"), message)
        }
        XCTAssertThrowsError(try cache.compactPositions(layer: 0, rope: rope))
        XCTAssertEqual(cache.positions(layer: 0, head: 0), (0..<300).map(Int32.init), "nothing changed")
        XCTAssertEqual(KVEntryFormat(name: "KIVI2"), .kivi(bits: 2))
        XCTAssertNil(KVEntryFormat(name: "kivi3"))
    }
}
