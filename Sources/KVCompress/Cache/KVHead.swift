import KVCore

/// One KV head of one layer: its entries in up to three parts. Row formats: rows only, or (after
/// ThinK pruned the head's key channels) the pruned entries followed by rows. KIVI: the quantized
/// part (oldest entries) followed by the full-precision residual rows. ZipCache: the salient
/// (4-bit) and unimportant (2-bit) parts, whose positions interleave (each lists its entries' head
/// rows), followed by the f16 buffer rows.
///
/// Head rows are in ascending position order: head row `j` is a quantized entry when
/// `j < packedCount` (KIVI: row `j` of its part; ZipCache: the entry whose head row is `j`), a
/// pruned entry when `j < leadingCount`, and row `j - leadingCount` otherwise.
final class KVHead {
    let rows: KVHeadStorage
    /// KIVI: one part; ZipCache: salient, then unimportant; row formats: none.
    let packed: [KIVIHeadPart]
    let headDim: Int
    /// ZipCache: per channel, the value scale of the head's first block (set by its first quantization).
    private let channelScales: UnsafeMutablePointer<Float>?
    private var hasChannelScales = false
    /// ThinK: the oldest entries with only `prunedChannels` of their keys stored (row formats).
    private(set) var pruned: KVHeadStorage?
    private var prunedChannels: UnsafeMutablePointer<Int32>?
    private var prunedChannelCount = 0

    init(keys: KVEntryFormat, values: KVEntryFormat, headDim: Int) {
        self.headDim = headDim
        rows = KVHeadStorage(keyType: keys.rowType, valueType: values.rowType, headDim: headDim)
        if keys == .zipCache {
            let c = UnsafeMutablePointer<Float>.allocate(capacity: headDim)
            c.initialize(repeating: 1, count: headDim)
            channelScales = c
            packed = [(4, ElementType.q4_1), (2, .q2_1)].map {
                KIVIHeadPart(keyBits: $0.0, keyType: .f16, valueType: $0.1, headDim: headDim,
                             valueScales: UnsafePointer(c), tracksHeadRows: true)
            }
        } else if keys.isKIVI || values.isKIVI {
            var bits: Int?
            if case .kivi(let b) = keys { bits = b }
            packed = [KIVIHeadPart(keyBits: bits, keyType: keys.packedRowType ?? .f16,
                                   valueType: values.packedRowType!, headDim: headDim)]
            channelScales = nil
        } else {
            packed = []
            channelScales = nil
        }
    }

    deinit {
        channelScales?.deallocate()
        prunedChannels?.deallocate()
    }

    var packedCount: Int { packed.reduce(0) { $0 + $1.count } }
    var prunedCount: Int { pruned?.count ?? 0 }
    /// Entries before the rows: quantized or pruned ones.
    var leadingCount: Int { packedCount + prunedCount }
    var count: Int { leadingCount + rows.count }

    /// Where head row `j < packedCount` lives: (part, row in the part).
    private func locate(_ j: Int) -> (part: Int, row: Int) {
        guard packed.count == 2, let h = packed[0].headRows else { return (0, j) }
        var lo = 0, hi = packed[0].count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Int(h[mid]) < j { lo = mid + 1 } else { hi = mid }
        }
        return lo < packed[0].count && Int(h[lo]) == j ? (0, lo) : (1, j - lo)
    }

    /// Head row `j`'s original position.
    func position(_ j: Int) -> Int32 {
        let p = packedCount, lead = leadingCount
        guard j < lead else { return rows.positions[j - lead] }
        guard j < p else { return pruned!.positions[j - p] }
        let (part, r) = locate(j)
        return packed[part].positions[r]
    }

    var lastPosition: Int32? {
        rows.lastPosition ?? pruned?.lastPosition ?? packed.compactMap(\.lastPosition).max()
    }

    /// Bytes held: the quantized parts' exact bytes (ZipCache: with the value channel scales), the
    /// pruned entries' narrower key rows, value rows and positions with the kept channels' list
    /// (ThinK), plus one key row, value row and position per row.
    var byteCount: Int {
        packed.reduce(0) { $0 + $1.byteCount } + rows.count * rows.bytesPerEntry + (hasChannelScales ? 4 * headDim : 0)
            + (pruned.map { $0.count * $0.bytesPerEntry + 4 * prunedChannelCount } ?? 0)
    }

    var allocatedBytes: Int {
        packed.reduce(0) { $0 + $1.allocatedBytes } + rows.allocatedBytes + (channelScales == nil ? 0 : 4 * headDim)
            + (pruned.map { $0.allocatedBytes + 4 * prunedChannelCount } ?? 0)
    }

    /// Reads head row `j`'s key as f32 (a pruned key: its kept channels, 0 in the others, as
    /// attention sees it).
    func key(_ j: Int, into out: UnsafeMutablePointer<Float>, headDim: Int) {
        let p = packedCount, lead = leadingCount
        guard j < lead else { return rows.key(j - lead, into: out, headDim: headDim) }
        if j >= p, let pruned, let channels = prunedChannels {
            let c = prunedChannelCount
            let kept = UnsafeMutablePointer<Float>.allocate(capacity: c)
            defer { kept.deallocate() }
            pruned.key(j - p, into: kept, headDim: c)
            out.initialize(repeating: 0, count: headDim)
            for i in 0..<c { out[Int(channels[i])] = kept[i] }
            return
        }
        let (part, r) = locate(j)
        packed[part].key(r, into: out)
    }

    /// Reads head row `j`'s value as f32.
    func value(_ j: Int, into out: UnsafeMutablePointer<Float>, headDim: Int) {
        let p = packedCount, lead = leadingCount
        guard j < lead else { return rows.value(j - lead, into: out, headDim: headDim) }
        guard j < p else { return pruned!.value(j - p, into: out, headDim: headDim) }
        let (part, r) = locate(j)
        packed[part].value(r, into: out)
    }

    /// Head rows `rows`' keys as f32, row after row (`rows.count x headDim`).
    func keys(_ rows: Range<Int>) -> [Float] { gather(rows, keys: true) }

    /// Head rows `rows`' values as f32, row after row.
    func values(_ rows: Range<Int>) -> [Float] { gather(rows, keys: false) }

    private func gather(_ rows: Range<Int>, keys: Bool) -> [Float] {
        let d = headDim
        return [Float](unsafeUninitializedCapacity: rows.count * d) { out, n in
            for (i, j) in rows.enumerated() {
                if keys { key(j, into: out.baseAddress! + i * d, headDim: d) } else { value(j, into: out.baseAddress! + i * d, headDim: d) }
            }
            n = rows.count * d
        }
    }

    /// Keeps the head rows at `sortedIndices` (strictly ascending, in range).
    func retain(sortedIndices kept: [Int]) {
        let p = packedCount, lead = leadingCount
        let split = kept.firstIndex { $0 >= p } ?? kept.count
        let rowSplit = kept.firstIndex { $0 >= lead } ?? kept.count
        if let pruned, prunedCount > 0 { pruned.retain(sortedIndices: kept[split..<rowSplit].map { $0 - p }) }
        if p > 0 {
            var keptRows = [[Int]](repeating: [], count: packed.count)
            var newHeadRows = [[Int32]](repeating: [], count: packed.count)
            for (newRow, j) in kept[..<split].enumerated() {
                let (part, r) = locate(j)
                keptRows[part].append(r)
                newHeadRows[part].append(Int32(newRow))
            }
            for (i, part) in packed.enumerated() {
                part.retain(sortedIndices: keptRows[i])
                if let h = part.headRows { h.update(from: newHeadRows[i], count: newHeadRows[i].count) }
            }
        }
        rows.retain(sortedIndices: kept[rowSplit...].map { $0 - lead })
    }

    /// Removes the contiguous head rows `range`.
    func remove(_ range: Range<Int>) {
        let lead = leadingCount
        guard range.lowerBound < lead else { return rows.remove((range.lowerBound - lead)..<(range.upperBound - lead)) }
        retain(sortedIndices: Array(0..<range.lowerBound) + Array(range.upperBound..<count))
    }

    func removeAll() {
        for part in packed { part.removeAll() }
        rows.removeAll()
        hasChannelScales = false
        pruned = nil
        prunedChannels?.deallocate()
        prunedChannels = nil
        prunedChannelCount = 0
    }

    /// The views attention reads: the quantized parts that hold entries, the pruned entries, then the rows.
    func views() -> [KVHeadView] {
        var views = packed.filter { $0.count > 0 }.map { $0.view() }
        if let pruned, pruned.count > 0 {
            var v = pruned.view()
            v.keyChannels = prunedChannels.map { UnsafePointer($0) }
            v.keyChannelCount = prunedChannelCount
            views.append(v)
        }
        return views + [rows.view()]
    }

    /// ThinK: moves the oldest `n` rows to the pruned part, storing only the key `channels`
    /// (ascending, in range) and the whole values. Once per head until ``removeAll()``.
    func pruneKeys(keeping channels: [Int], rows n: Int) {
        precondition(pruned == nil && packed.isEmpty && n <= rows.count, "a row-format head pruned once")
        let c = channels.count
        let part = KVHeadStorage(keyType: rows.keyType, valueType: rows.valueType, headDim: headDim, keyWidth: c)
        let list = UnsafeMutablePointer<Int32>.allocate(capacity: c)
        for (i, ch) in channels.enumerated() { list[i] = Int32(ch) }
        let d = headDim
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 3 * d)
        defer { buffer.deallocate() }
        part.reserve(n)
        for r in 0..<n {
            rows.key(r, into: buffer, headDim: d)
            for i in 0..<c { buffer[2 * d + i] = buffer[channels[i]] }
            rows.value(r, into: buffer + d, headDim: d)
            part.append(key: buffer + 2 * d, value: buffer + d, position: rows.positions[r], headDim: d, keyWidth: c)
        }
        rows.remove(0..<n)
        (pruned, prunedChannels, prunedChannelCount) = (part, list, c)
    }

    /// KIVI: moves the oldest residual rows to the quantized part, `group` at a time, while the
    /// residual holds at least `residual + group` rows (so it keeps the newest `residual` or more).
    func compactResidual(residual: Int, group: Int) {
        guard packed.count == 1, rows.count >= residual + group else { return }
        let n = (rows.count - residual) / group * group
        let d = headDim
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 2 * group * d)
        defer { buffer.deallocate() }
        var start = 0
        while start < n {
            for r in 0..<group {
                rows.key(start + r, into: buffer + r * d, headDim: d)
                rows.value(start + r, into: buffer + (group + r) * d, headDim: d)
            }
            packed[0].appendGroup(keys: buffer, values: buffer + group * d, positions: rows.positions + start, n: group)
            start += group
        }
        rows.remove(0..<n)
    }

    /// ZipCache: quantizes the first `salient.count` buffered rows as one block, row `r` at 4 bits
    /// when `salient[r]`, else at 2 bits (keys per channel over groups of up to
    /// ``KVCache/kiviGroupSize`` consecutive rows of the block's salient, or unimportant, rows; values
    /// per token after dividing by the channel scales, which the head's first block sets to
    /// `sqrt(max |value|)` per channel). Head rows do not change.
    func quantizeBlock(salient: [Bool]) {
        precondition(packed.count == 2 && salient.count <= rows.count, "ZipCache head with enough buffered rows")
        let n = salient.count
        guard n > 0 else { return }
        let d = headDim
        let first = packedCount
        if !hasChannelScales, let c = channelScales {
            let v = UnsafeMutablePointer<Float>.allocate(capacity: d)
            defer { v.deallocate() }
            c.initialize(repeating: 0, count: d)
            for r in 0..<n {
                rows.value(r, into: v, headDim: d)
                for i in 0..<d { c[i] = max(c[i], abs(v[i])) }
            }
            for i in 0..<d { c[i] = c[i] > 0 ? c[i].squareRoot() : 1 }
            hasChannelScales = true
        }
        for (part, wanted) in zip(packed, [true, false]) {
            let chosen = (0..<n).filter { salient[$0] == wanted }
            guard !chosen.isEmpty else { continue }
            let m = chosen.count
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 2 * m * d)
            defer { buffer.deallocate() }
            var positions = [Int32](repeating: 0, count: m)
            var headRows = [Int32](repeating: 0, count: m)
            for (i, r) in chosen.enumerated() {
                rows.key(r, into: buffer + i * d, headDim: d)
                rows.value(r, into: buffer + (m + i) * d, headDim: d)
                positions[i] = rows.positions[r]
                headRows[i] = Int32(first + r)
            }
            var start = 0
            while start < m {  // key ranges per group of consecutive entries of this precision
                let g = min(KVCache.kiviGroupSize, m - start)
                positions.withUnsafeBufferPointer { p in
                    headRows.withUnsafeBufferPointer { h in
                        part.appendGroup(keys: buffer + start * d, values: buffer + (m + start) * d,
                                         positions: p.baseAddress! + start, headRows: h.baseAddress! + start, n: g)
                    }
                }
                start += g
            }
        }
        rows.remove(0..<n)
    }
}
