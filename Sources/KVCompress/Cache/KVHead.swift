import KVCore

/// One KV head of one layer: its entries in up to two parts, the quantized part of a KIVI cache
/// (oldest entries) followed by rows (the full-precision residual of a KIVI cache, or every entry
/// of a row-format cache). Head row `j` is row `j` of the quantized part, or row `j - packedCount`
/// of the rows; positions ascend over the whole head.
final class KVHead {
    let rows: KVHeadStorage
    let packed: KIVIHeadPart?
    let headDim: Int

    init(keys: KVEntryFormat, values: KVEntryFormat, headDim: Int) {
        self.headDim = headDim
        rows = KVHeadStorage(keyType: keys.rowType, valueType: values.rowType, headDim: headDim)
        if keys.isKIVI || values.isKIVI {
            var bits: Int?
            if case .kivi(let b) = keys { bits = b }
            packed = KIVIHeadPart(keyBits: bits, keyType: keys.packedRowType ?? .f16,
                                  valueType: values.packedRowType!, headDim: headDim)
        } else {
            packed = nil
        }
    }

    var packedCount: Int { packed?.count ?? 0 }
    var count: Int { packedCount + rows.count }

    /// Head row `j`'s original position.
    func position(_ j: Int) -> Int32 {
        let p = packedCount
        return j < p ? packed!.positions[j] : rows.positions[j - p]
    }

    var lastPosition: Int32? { rows.lastPosition ?? packed?.lastPosition }

    /// Bytes held: the quantized part's exact bytes plus one key row, value row and position per row.
    var byteCount: Int { (packed?.byteCount ?? 0) + rows.count * rows.bytesPerEntry }

    var allocatedBytes: Int { (packed?.allocatedBytes ?? 0) + rows.allocatedBytes }

    /// Reads head row `j`'s key as f32.
    func key(_ j: Int, into out: UnsafeMutablePointer<Float>, headDim: Int) {
        let p = packedCount
        if j < p { packed!.key(j, into: out) } else { rows.key(j - p, into: out, headDim: headDim) }
    }

    /// Reads head row `j`'s value as f32.
    func value(_ j: Int, into out: UnsafeMutablePointer<Float>, headDim: Int) {
        let p = packedCount
        if j < p { packed!.value(j, into: out) } else { rows.value(j - p, into: out, headDim: headDim) }
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
        let p = packedCount
        let split = kept.firstIndex { $0 >= p } ?? kept.count
        if let packed, split < p { packed.retain(sortedIndices: Array(kept[..<split])) }
        rows.retain(sortedIndices: kept[split...].map { $0 - p })
    }

    /// Removes the contiguous head rows `range`.
    func remove(_ range: Range<Int>) {
        let p = packedCount
        if range.upperBound > p { rows.remove(max(range.lowerBound - p, 0)..<(range.upperBound - p)) }
        if let packed, range.lowerBound < p {
            let cut = range.lowerBound..<min(range.upperBound, p)
            packed.retain(sortedIndices: Array(0..<cut.lowerBound) + Array(cut.upperBound..<p))
        }
    }

    func removeAll() {
        packed?.removeAll()
        rows.removeAll()
    }

    /// The views attention reads: the quantized part (when it holds entries), then the rows.
    func views() -> [KVHeadView] {
        if let packed, packed.count > 0 { return [packed.view(), rows.view()] }
        return [rows.view()]
    }

    /// Moves the oldest residual rows to the quantized part, `group` at a time, while the residual
    /// holds at least `residual + group` rows (so it keeps the newest `residual` or more).
    func compactResidual(residual: Int, group: Int) {
        guard let packed, rows.count >= residual + group else { return }
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
            packed.appendGroup(keys: buffer, values: buffer + group * d, positions: rows.positions + start, n: group)
            start += group
        }
        rows.remove(0..<n)
    }
}
