import CKVKernels
import KVCore

/// A quantized part of one KV head: the entries of a KIVI cache that left the full-precision
/// residual, in groups of up to ``KVCache/kiviGroupSize`` consecutive entries, or one of the two
/// precisions of a ZipCache head (each group: the salient or the unimportant entries of one block).
///
/// Keys are KIVI code rows with one f16 scale and min per channel per group (or, when only the
/// values use KIVI, rows of an element type); values are rows of an element type (`q2_1` / `q4_1`
/// for KIVI and ZipCache), for ZipCache stored divided by the head's per-channel value scales. A
/// ZipCache part also lists each entry's head row (its positions interleave with the other
/// part's). Evicting an entry removes its rows; a group keeps its parameters while any of its
/// entries remain, so the survivors decode exactly as before. Rows, positions and group tables
/// live in separate allocations that shrink when the part falls to half its capacity.
final class KIVIHeadPart {
    /// Bits of the key codes, nil when keys are rows of `keyType`.
    let keyBits: Int?
    let keyType: ElementType
    let valueType: ElementType
    let headDim: Int
    let keyRowBytes: Int
    let valueRowBytes: Int
    private var keyAlloc: UnsafeMutableRawPointer
    private var valueAlloc: UnsafeMutableRawPointer
    private var positionAlloc: UnsafeMutablePointer<Int32>
    /// Each entry's head row (ZipCache), nil when the part's rows come first in the head in order.
    private var headRowAlloc: UnsafeMutablePointer<Int32>?
    /// Per channel, the factor values were divided by before quantization (ZipCache; owned by the head).
    let valueScales: UnsafePointer<Float>?
    private(set) var count = 0
    private var capacity: Int
    /// Per group: `2 * headDim` f16 parameters, and one past its last row.
    private var params: UnsafeMutablePointer<UInt16>
    private var groupEnds: UnsafeMutablePointer<Int32>
    private(set) var groupCount = 0
    private var groupCapacity: Int

    init(keyBits: Int?, keyType: ElementType, valueType: ElementType, headDim: Int,
         valueScales: UnsafePointer<Float>? = nil, tracksHeadRows: Bool = false) {
        self.keyBits = keyBits
        self.valueScales = valueScales
        self.keyType = keyType
        self.valueType = valueType
        self.headDim = headDim
        keyRowBytes = keyBits.map { headDim * $0 / 8 } ?? keyType.byteCount(elements: headDim)
        valueRowBytes = valueType.byteCount(elements: headDim)
        capacity = KVHeadStorage.minimumCapacity
        groupCapacity = 1
        keyAlloc = .allocate(byteCount: capacity * keyRowBytes, alignment: KVHeadStorage.alignment)
        valueAlloc = .allocate(byteCount: capacity * valueRowBytes, alignment: KVHeadStorage.alignment)
        positionAlloc = .allocate(capacity: capacity)
        headRowAlloc = tracksHeadRows ? .allocate(capacity: capacity) : nil
        params = .allocate(capacity: groupCapacity * 2 * headDim)
        groupEnds = .allocate(capacity: groupCapacity)
    }

    deinit {
        keyAlloc.deallocate()
        valueAlloc.deallocate()
        positionAlloc.deallocate()
        headRowAlloc?.deallocate()
        params.deallocate()
        groupEnds.deallocate()
    }

    /// Each entry's head row (ZipCache parts), nil otherwise.
    var headRows: UnsafeMutablePointer<Int32>? { headRowAlloc }

    var positions: UnsafeMutablePointer<Int32> { positionAlloc }
    var lastPosition: Int32? { count > 0 ? positionAlloc[count - 1] : nil }

    /// Bytes of one entry: key codes (or row), value row, Int32 position and (ZipCache) Int32 head row.
    var bytesPerRow: Int { keyRowBytes + valueRowBytes + 4 + (headRowAlloc == nil ? 0 : 4) }

    /// Bytes of the part: per entry ``bytesPerRow``; per group (KIVI keys) its f16 scales and mins
    /// and its Int32 end.
    var byteCount: Int {
        count * bytesPerRow + (keyBits == nil ? 0 : groupCount * (4 * headDim + 4))
    }

    var allocatedBytes: Int {
        capacity * bytesPerRow + (keyBits == nil ? 0 : groupCapacity * (4 * headDim + 4))
    }

    private func reallocate(rows newCapacity: Int) {
        let newCap = max(newCapacity, 1)
        let k = UnsafeMutableRawPointer.allocate(byteCount: newCap * keyRowBytes, alignment: KVHeadStorage.alignment)
        let v = UnsafeMutableRawPointer.allocate(byteCount: newCap * valueRowBytes, alignment: KVHeadStorage.alignment)
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: newCap)
        k.copyMemory(from: keyAlloc, byteCount: count * keyRowBytes)
        v.copyMemory(from: valueAlloc, byteCount: count * valueRowBytes)
        p.update(from: positionAlloc, count: count)
        if let h = headRowAlloc {
            let newRows = UnsafeMutablePointer<Int32>.allocate(capacity: newCap)
            newRows.update(from: h, count: count)
            h.deallocate()
            headRowAlloc = newRows
        }
        keyAlloc.deallocate()
        valueAlloc.deallocate()
        positionAlloc.deallocate()
        (keyAlloc, valueAlloc, positionAlloc, capacity) = (k, v, p, newCap)
    }

    private func reallocate(groups newCapacity: Int) {
        let newCap = max(newCapacity, 1)
        let p = UnsafeMutablePointer<UInt16>.allocate(capacity: newCap * 2 * headDim)
        let e = UnsafeMutablePointer<Int32>.allocate(capacity: newCap)
        p.update(from: params, count: groupCount * 2 * headDim)
        e.update(from: groupEnds, count: groupCount)
        params.deallocate()
        groupEnds.deallocate()
        (params, groupEnds, groupCapacity) = (p, e, newCap)
    }

    /// Appends `n` entries as one group: f32 keys and values, row `r` at `keys + r * headDim`, and
    /// (ZipCache parts) their head rows.
    func appendGroup(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, positions: UnsafePointer<Int32>,
                     headRows: UnsafePointer<Int32>? = nil, n: Int) {
        guard n > 0 else { return }
        if count + n > capacity { reallocate(rows: max(count + n, capacity * 2)) }
        let d = headDim
        if let bits = keyBits {
            if groupCount == groupCapacity { reallocate(groups: groupCapacity * 2) }
            kvk_kivi_quantize_keys(Int32(bits), keys, d, n, d, keyAlloc + count * keyRowBytes, keyRowBytes,
                                   params + groupCount * 2 * d)
            groupEnds[groupCount] = Int32(count + n)
            groupCount += 1
        } else {
            for r in 0..<n {
                KVHeadStorage.store(keys + r * d, as: keyType, into: keyAlloc + (count + r) * keyRowBytes, headDim: d)
            }
        }
        let scaled = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { scaled.deallocate() }
        for r in 0..<n {
            var row = values + r * d
            if let c = valueScales {
                for i in 0..<d { scaled[i] = row[i] / c[i] }
                row = UnsafePointer(scaled)
            }
            KVHeadStorage.store(row, as: valueType, into: valueAlloc + (count + r) * valueRowBytes, headDim: d)
        }
        (positionAlloc + count).update(from: positions, count: n)
        if let h = headRowAlloc, let headRows { (h + count).update(from: headRows, count: n) }
        count += n
    }

    /// Keeps the rows at `sortedIndices` (strictly ascending, in range); groups left empty are
    /// dropped with their parameters.
    func retain(sortedIndices kept: [Int]) {
        guard kept.count < count else { return }
        for (w, j) in kept.enumerated() where w != j {
            (keyAlloc + w * keyRowBytes).copyMemory(from: keyAlloc + j * keyRowBytes, byteCount: keyRowBytes)
            (valueAlloc + w * valueRowBytes).copyMemory(from: valueAlloc + j * valueRowBytes, byteCount: valueRowBytes)
            positionAlloc[w] = positionAlloc[j]
            headRowAlloc?[w] = headRowAlloc![j]
        }
        if keyBits != nil { regroup(kept) }
        count = kept.count
        if count <= capacity / 2 && capacity > KVHeadStorage.minimumCapacity {
            reallocate(rows: count + max(KVHeadStorage.minimumCapacity, count / 16))
        }
    }

    /// New group ends after keeping `kept` (old row indices): each group keeps the kept rows of its
    /// old range; empty groups are dropped.
    private func regroup(_ kept: [Int]) {
        let d2 = 2 * headDim
        var k = 0, written = 0
        for g in 0..<groupCount {
            let first = k
            while k < kept.count && kept[k] < Int(groupEnds[g]) { k += 1 }
            guard k > first else { continue }
            if written != g { (params + written * d2).update(from: params + g * d2, count: d2) }
            groupEnds[written] = Int32(k)
            written += 1
        }
        groupCount = written
        if groupCount <= groupCapacity / 4 && groupCapacity > 4 { reallocate(groups: groupCount * 2) }
    }

    func removeAll() {
        count = 0
        groupCount = 0
        if capacity > KVHeadStorage.minimumCapacity { reallocate(rows: KVHeadStorage.minimumCapacity) }
        if groupCapacity > 1 { reallocate(groups: 1) }
    }

    /// Row `j`'s key as f32.
    func key(_ j: Int, into out: UnsafeMutablePointer<Float>) {
        let row = keyAlloc + j * keyRowBytes
        if let bits = keyBits {
            let g = view().keyGroups!.group(ofRow: j)
            kvk_kivi_dequantize_key(Int32(bits), row, params + g * 2 * headDim, headDim, out)
        } else {
            KVHeadStorage.load(row, type: keyType, into: out, headDim: headDim)
        }
    }

    /// Row `j`'s value as f32.
    func value(_ j: Int, into out: UnsafeMutablePointer<Float>) {
        KVHeadStorage.load(valueAlloc + j * valueRowBytes, type: valueType, into: out, headDim: headDim)
        if let c = valueScales { for i in 0..<headDim { out[i] *= c[i] } }
    }

    func view() -> KVHeadView {
        KVHeadView(keys: UnsafeRawPointer(keyAlloc), values: UnsafeRawPointer(valueAlloc),
                   positions: UnsafePointer(positionAlloc), count: count, keyType: keyType, valueType: valueType,
                   keyStride: keyRowBytes, valueStride: valueRowBytes,
                   keyGroups: keyBits.map { KVKeyGroups(bits: $0, params: params, groupEnds: groupEnds, groupCount: groupCount) },
                   headRows: headRowAlloc.map { UnsafePointer($0) }, valueChannelScales: valueScales)
    }
}
