import Foundation
import XCTest
@testable import KVCompress

final class KVCacheTests: XCTestCase {
    let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 32)

    func testAppendStoresRowsPerHeadExactlyInF32() throws {
        let p = SyntheticPrompt(shape: shape, length: 40, seed: 1)
        let cache = p.makeCache(.f32)
        p.append(0..<40, to: cache)
        XCTAssertEqual(cache.totalEntries, 2 * 2 * 40)
        for l in 0..<2 {
            for m in 0..<2 {
                XCTAssertEqual(cache.count(layer: l, head: m), 40)
                XCTAssertEqual(cache.positions(layer: l, head: m), (0..<40).map { Int32($0) })
                for t in [0, 17, 39] {
                    XCTAssertEqual(cache.key(layer: l, head: m, row: t).map(Double.init), p.key(l, t, m))
                    XCTAssertEqual(cache.value(layer: l, head: m, row: t).map(Double.init), p.value(l, t, m))
                }
            }
        }
    }

    func testStorageTypesRoundTrip() throws {
        let p = SyntheticPrompt(shape: shape, length: 8, seed: 2)
        for (type, tol) in [(ElementType.f16, 2e-3), (.bf16, 8e-3), (.q8_0, 1.0 / 127 + 1e-3), (.q4_0, 1.0 / 7 + 1e-3)] {
            let cache = p.makeCache(type)
            p.append(0..<8, to: cache)
            for t in 0..<8 {
                let got = cache.key(layer: 1, head: 1, row: t)
                let want = p.key(1, t, 1)
                let amax = want.map(abs).max()!
                for i in want.indices { XCTAssertEqual(Double(got[i]), want[i], accuracy: tol * max(amax, 1), "\(type)") }
            }
        }
    }

    func testByteCountIsExactAndEvictionFreesMemory() throws {
        let p = SyntheticPrompt(shape: shape, length: 300, seed: 3)
        for type in [ElementType.f32, .f16, .q8_0] {
            let cache = p.makeCache(type)
            let rowBytes = type.byteCount(elements: shape.headDim)
            XCTAssertEqual(cache.bytesPerEntry, 2 * rowBytes + 4)
            p.append(0..<300, to: cache)
            let meta = shape.layers * shape.kvHeads * KVCache.metadataBytesPerHead
            XCTAssertEqual(cache.byteCount, 2 * 2 * 300 * (2 * rowBytes + 4) + meta)
            let allocatedBefore = cache.allocatedByteCount
            XCTAssertGreaterThanOrEqual(allocatedBefore, cache.byteCount)
            // Ragged eviction: head 0 keeps 30 rows, head 1 keeps 200, in layer 0 only.
            try cache.retain(layer: 0, head: 0, indices: Array(stride(from: 0, to: 300, by: 10)))
            try cache.retain(layer: 0, head: 1, indices: Array((100..<300).reversed()))
            XCTAssertEqual(cache.totalEntries, 30 + 200 + 600)
            XCTAssertEqual(cache.byteCount, (30 + 200 + 600) * (2 * rowBytes + 4) + meta)
            XCTAssertLessThan(cache.allocatedByteCount, allocatedBefore)
            // Metadata stays small relative to a real cache.
            XCTAssertLessThan(Double(meta), 0.01 * Double(cache.byteCount))
            // The kept rows are the right ones, ascending.
            XCTAssertEqual(cache.positions(layer: 0, head: 0), (0..<30).map { Int32($0 * 10) })
            XCTAssertEqual(cache.positions(layer: 0, head: 1), (100..<300).map { Int32($0) })
            if type == .f32 {
                XCTAssertEqual(cache.key(layer: 0, head: 0, row: 3).map(Double.init), p.key(0, 30, 0))
                XCTAssertEqual(cache.value(layer: 0, head: 1, row: 0).map(Double.init), p.value(0, 100, 1))
            }
            let views = cache.headParts(layer: 0).map { $0[0] }
            XCTAssertEqual(views.map(\.count), [30, 200])
            XCTAssertEqual(views[0].positions[29], 290)
            // Appending continues after the largest position.
            XCTAssertEqual(cache.nextPosition(layer: 0), 300)
            cache.removeAll()
            XCTAssertEqual(cache.totalEntries, 0)
            XCTAssertEqual(cache.byteCount, meta)
        }
    }

    func testAppendRejectsNonIncreasingPositions() throws {
        let cache = try KVCache(layers: 1, kvHeads: 1, headDim: 4, elementType: .f32)
        try cache.append(layer: 0, keys: [1, 2, 3, 4], values: [1, 2, 3, 4], positions: [5])
        XCTAssertThrowsError(try cache.append(layer: 0, keys: [1, 2, 3, 4], values: [1, 2, 3, 4], positions: [5])) {
            guard case KVError.invalidParameter = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertEqual(cache.totalEntries, 1)
    }

    func testInvalidCacheShapes() {
        XCTAssertThrowsError(try KVCache(layers: 0, kvHeads: 1, headDim: 32))
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 48, elementType: .q8_0))
        XCTAssertNoThrow(try KVCache(layers: 1, kvHeads: 1, headDim: 48, elementType: .f16))
        XCTAssertThrowsError(try KVCache(layers: 1, kvHeads: 1, headDim: 48, elementType: .q4_1))
        XCTAssertNoThrow(try KVCache(layers: 1, kvHeads: 1, headDim: 64, elementType: .q4_1))
        XCTAssertNoThrow(try KVCache(layers: 1, kvHeads: 1, headDim: 64, keyType: .q8_0, valueType: .q4_0))
        XCTAssertThrowsError(try KVModelShape(layers: 1, heads: 9, kvHeads: 2, headDim: 64))
        XCTAssertThrowsError(try KVModelShape(layers: 1, heads: 4, kvHeads: 2, headDim: 64,
                                              rope: try RoPE(inverseFrequencies: [1], pairing: .neox)))
        XCTAssertThrowsError(try KVModelShape(layers: 1, heads: 4, kvHeads: 2, headDim: 64, contextLength: 0))
        XCTAssertThrowsError(try RoPE(headDim: 63, pairing: .neox))
        XCTAssertThrowsError(try RoPE(headDim: 64, base: 0.5, pairing: .neox))
        let cache = try! KVCache(layers: 2, kvHeads: 2, headDim: 32)
        XCTAssertThrowsError(try KVCompressor(policy: FullCache(), cache: cache,
                                              shape: SyntheticPrompt.shape(layers: 3))) {
            guard case KVError.shapeMismatch = $0 else { return XCTFail("\($0)") }
        }
    }

    /// Re-positioning rotates a post-RoPE key from position s to i: equal to RoPE at i of the
    /// pre-RoPE key (double-precision reference), for both pairings.
    func testRepositionRotatesKeysByTheDelta() throws {
        for pairing in RoPEPairing.allCases {
            let sh = SyntheticPrompt.shape(layers: 1, heads: 2, kvHeads: 1, headDim: 32, pairing: pairing)
            let d = sh.headDim
            var rng = SplitMix64(seed: 9)
            let raw = (0..<(3 * d)).map { _ in Double.random(in: -1...1, using: &rng) }
            func rope(_ x: ArraySlice<Double>, _ pos: Int) -> [Double] {
                var y = Array(x)
                for i in 0..<(d / 2) {
                    let (a, b) = pairing.pair(i, headDim: d)
                    let ang = Double(pos) * Double(sh.rope!.inverseFrequencies[i])
                    y[a] = x[x.startIndex + a] * cos(ang) - x[x.startIndex + b] * sin(ang)
                    y[b] = x[x.startIndex + b] * cos(ang) + x[x.startIndex + a] * sin(ang)
                }
                return y
            }
            let old = [7, 300, 1000]
            var keys: [Float] = []
            for t in 0..<3 { keys += rope(raw[(t * d)..<(t * d + d)], old[t]).map(Float.init) }
            let cache = try KVCache(layers: 1, kvHeads: 1, headDim: d, elementType: .f32)
            try cache.append(layer: 0, keys: keys, values: keys, positions: old.map { Int32($0) })
            try cache.reposition(layer: 0, head: 0, to: [0, 1, 2], rope: sh.rope!)
            XCTAssertEqual(cache.positions(layer: 0, head: 0), [0, 1, 2])
            for t in 0..<3 {
                let want = rope(raw[(t * d)..<(t * d + d)], t)
                let got = cache.key(layer: 0, head: 0, row: t)
                for i in 0..<d { XCTAssertEqual(Double(got[i]), want[i], accuracy: 2e-3, "\(pairing) row \(t) dim \(i)") }
            }
        }
    }

    /// attend / attendPrefill / observe go through the Attention kernels over the ragged heads.
    func testAttendMatchesNaiveAttentionOverRaggedHeads() throws {
        let p = SyntheticPrompt(shape: shape, length: 50, seed: 4)
        let cache = p.makeCache(.f32)
        p.append(0..<50, to: cache)
        let keep0 = Array(stride(from: 0, to: 50, by: 3)), keep1 = Array(20..<50)
        try cache.retain(layer: 1, head: 0, indices: keep0)
        try cache.retain(layer: 1, head: 1, indices: keep1)
        let H = shape.heads, d = shape.headDim
        var out = [Float](repeating: 0, count: H * d)
        let q = Array(p.queries[1][(49 * H * d)..<(50 * H * d)])
        q.withUnsafeBufferPointer { qb in out.withUnsafeMutableBufferPointer { ob in
            cache.attend(layer: 1, query: qb.baseAddress!, heads: H, output: ob.baseAddress!)
        } }
        for h in 0..<H {
            let m = h / shape.groupSize
            let rows = m == 0 ? keep0 : keep1
            let qd = p.query(1, 49, h)
            var w = rows.map { exp(dot(qd, p.key(1, $0, m)) / Double(d).squareRoot()) }
            let s = w.reduce(0, +)
            w = w.map { $0 / s }
            for i in 0..<d {
                let want = zip(rows, w).reduce(0) { $0 + $1.1 * p.value(1, $1.0, m)[i] }
                XCTAssertEqual(Double(out[h * d + i]), want, accuracy: 1e-4)
            }
        }
    }
}

final class KVCacheStressTests: XCTestCase {
    /// Random appends and evictions (front-heavy, back-heavy, scattered) against a plain model.
    func testRandomAppendsAndEvictionsKeepContentAligned() throws {
        let d = 8
        let cache = try KVCache(layers: 1, kvHeads: 1, headDim: d, elementType: .f32)
        var model: [(pos: Int32, key: [Float], value: [Float])] = []
        var rng = SplitMix64(seed: 21)
        var next: Int32 = 0
        for step in 0..<400 {
            let n = Int.random(in: 1...12, using: &rng)
            var ks: [Float] = [], vs: [Float] = [], ps: [Int32] = []
            for _ in 0..<n {
                let k = (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
                let v = (0..<d).map { _ in Float.random(in: -1...1, using: &rng) }
                ks += k; vs += v; ps.append(next)
                model.append((next, k, v))
                next += Int32.random(in: 1...3, using: &rng)
            }
            try cache.append(layer: 0, keys: ks, values: vs, positions: ps)
            let c = model.count
            var keep: [Int]
            switch step % 4 {
            case 0: keep = Array(0..<min(2, c)) + Array(min(2, c) + min(n, c - min(2, c))..<c)  // streaming-like front eviction
            case 1: keep = Array(0..<max(0, c - n / 2))                                          // drop newest
            case 2: keep = (0..<c).filter { _ in Bool.random(using: &rng) || c < 20 }              // scattered
            default:
                let a = Int.random(in: 0...c, using: &rng), b = Int.random(in: a...min(c, a + 2 * n), using: &rng)
                keep = Array(0..<a) + Array(b..<c)
                try cache.remove(layer: 0, head: 0, rows: a..<b)
            }
            keep.shuffle(using: &rng)
            if step % 4 != 3 { try cache.retain(layer: 0, head: 0, indices: keep) }
            model = keep.sorted().map { model[$0] }
            XCTAssertEqual(cache.positions(layer: 0, head: 0), model.map(\.pos))
            XCTAssertEqual(cache.byteCount, model.count * cache.bytesPerEntry + cache.metadataBytes)
            for j in Set([0, model.count / 2, model.count - 1]) where j >= 0 && j < model.count {
                XCTAssertEqual(cache.key(layer: 0, head: 0, row: j), model[j].key)
                XCTAssertEqual(cache.value(layer: 0, head: 0, row: j), model[j].value)
                XCTAssertEqual(cache.headParts(layer: 0)[0][0].positions[j], model[j].pos)
            }
        }
    }
}
