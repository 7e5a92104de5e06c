import CKVKernels

/// Owned, growable storage of one KV head of one layer: rows of keys and values in their element
/// types plus each row's original position, in ascending position order.
///
/// Rows live in three separate allocations (keys, values, positions) of `capacity` rows each; the
/// live rows are a contiguous range of them. Appending grows the capacity geometrically;
/// ``retain(sortedIndices:)`` compacts the kept rows in place (moving the cheaper side) and
/// reallocates to a tight capacity when the row count falls to half the capacity, so evicted memory
/// is returned to the allocator.
final class KVHeadStorage {
    let keyType: ElementType
    let valueType: ElementType
    let keyRowBytes: Int
    let valueRowBytes: Int
    /// Allocations of `capacity` rows; live rows are `start ..< start + count`.
    private var keyAlloc: UnsafeMutableRawPointer
    private var valueAlloc: UnsafeMutableRawPointer
    private var positionAlloc: UnsafeMutablePointer<Int32>
    private var start = 0
    private(set) var count = 0
    private(set) var capacity: Int

    /// Rows allocated up front and kept as headroom after a shrink.
    static let minimumCapacity = 16
    static let alignment = 64

    init(keyType: ElementType, valueType: ElementType, headDim: Int) {
        self.keyType = keyType
        self.valueType = valueType
        keyRowBytes = keyType.byteCount(elements: headDim)
        valueRowBytes = valueType.byteCount(elements: headDim)
        capacity = Self.minimumCapacity
        keyAlloc = .allocate(byteCount: capacity * keyRowBytes, alignment: Self.alignment)
        valueAlloc = .allocate(byteCount: capacity * valueRowBytes, alignment: Self.alignment)
        positionAlloc = .allocate(capacity: capacity)
    }

    deinit {
        keyAlloc.deallocate()
        valueAlloc.deallocate()
        positionAlloc.deallocate()
    }

    /// Row 0's key, value and position.
    var keys: UnsafeMutableRawPointer { keyAlloc + start * keyRowBytes }
    var values: UnsafeMutableRawPointer { valueAlloc + start * valueRowBytes }
    var positions: UnsafeMutablePointer<Int32> { positionAlloc + start }

    /// Bytes of one entry: key row + value row + its Int32 position.
    var bytesPerEntry: Int { keyRowBytes + valueRowBytes + MemoryLayout<Int32>.size }

    /// Bytes currently allocated for rows (capacity, not count).
    var allocatedBytes: Int { capacity * bytesPerEntry }

    var lastPosition: Int32? { count > 0 ? positions[count - 1] : nil }

    /// Reallocates to exactly `newCapacity` rows (>= count), copying the live rows to the front.
    private func reallocate(to newCapacity: Int) {
        precondition(newCapacity >= count)
        let newCap = max(newCapacity, 1)
        let k = UnsafeMutableRawPointer.allocate(byteCount: newCap * keyRowBytes, alignment: Self.alignment)
        let v = UnsafeMutableRawPointer.allocate(byteCount: newCap * valueRowBytes, alignment: Self.alignment)
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: newCap)
        k.copyMemory(from: keys, byteCount: count * keyRowBytes)
        v.copyMemory(from: values, byteCount: count * valueRowBytes)
        p.update(from: positions, count: count)
        keyAlloc.deallocate()
        valueAlloc.deallocate()
        positionAlloc.deallocate()
        keyAlloc = k
        valueAlloc = v
        positionAlloc = p
        capacity = newCap
        start = 0
    }

    /// Moves the live rows to the front of the allocation.
    private func shiftToFront() {
        guard start > 0 else { return }
        keyAlloc.copyMemory(from: keys, byteCount: count * keyRowBytes)
        valueAlloc.copyMemory(from: values, byteCount: count * valueRowBytes)
        UnsafeMutableRawPointer(positionAlloc).copyMemory(from: positions, byteCount: count * 4)
        start = 0
    }

    /// Makes room for `extra` more rows after the last one.
    func reserve(_ extra: Int) {
        let needed = count + extra
        guard start + needed > capacity else { return }
        if needed <= capacity * 3 / 4 {
            shiftToFront()   // amortized: happens once per capacity / 4 front evictions
        } else {
            reallocate(to: max(needed, capacity + capacity / 2, Self.minimumCapacity))
        }
    }

    /// Appends one row converted from f32 (`headDim` elements each).
    func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>, position: Int32, headDim: Int) {
        reserve(1)
        Self.store(key, as: keyType, into: keys + count * keyRowBytes, headDim: headDim)
        Self.store(value, as: valueType, into: values + count * valueRowBytes, headDim: headDim)
        positions[count] = position
        count += 1
    }

    static func store(_ src: UnsafePointer<Float>, as type: ElementType, into dst: UnsafeMutableRawPointer,
                      headDim: Int) {
        if type == .f32 {
            dst.copyMemory(from: src, byteCount: headDim * 4)
        } else {
            kvk_quantize(type.kernelType, src, dst, headDim)
        }
    }

    private func moveRow(_ src: Int, to dst: Int) {
        (keys + dst * keyRowBytes).copyMemory(from: keys + src * keyRowBytes, byteCount: keyRowBytes)
        (values + dst * valueRowBytes).copyMemory(from: values + src * valueRowBytes, byteCount: valueRowBytes)
        positions[dst] = positions[src]
    }

    /// Keeps the rows at `sortedIndices` (strictly ascending, in range), compacting in place, and
    /// shrinks the allocation when the count falls to half the capacity or below.
    ///
    /// Compaction moves whichever side is cheaper: the kept rows after the first removed one move
    /// toward the front, or the kept rows before the last removed one move toward the back (then
    /// the live range starts later). Evicting near the front (a StreamingLLM window) therefore
    /// costs O(sinks), not O(count).
    func retain(sortedIndices kept: [Int]) {
        let removed = count - kept.count
        guard removed > 0 else { return }
        // First and last removed rows.
        var firstRemoved = 0
        while firstRemoved < kept.count && kept[firstRemoved] == firstRemoved { firstRemoved += 1 }
        var lastRemoved = count - 1
        var k = kept.count - 1
        while k >= 0 && kept[k] == lastRemoved { lastRemoved -= 1; k -= 1 }
        let moveFront = kept.count - firstRemoved      // kept rows after the first removed one
        let moveBack = k + 1                           // kept rows before the last removed one
        if moveBack < moveFront {
            var w = lastRemoved
            var i = k
            while i >= 0 {
                if kept[i] != w { moveRow(kept[i], to: w) }
                w -= 1
                i -= 1
            }
            start += removed
        } else {
            var w = firstRemoved
            for i in firstRemoved..<kept.count {
                if kept[i] != w { moveRow(kept[i], to: w) }
                w += 1
            }
        }
        count = kept.count
        shrinkIfSparse()
    }

    /// Removes the contiguous rows `range`, moving the shorter side: O(min(before, after)) rows.
    func remove(_ range: Range<Int>) {
        let n = range.count
        guard n > 0 else { return }
        let before = range.lowerBound, after = count - range.upperBound
        if before <= after {
            var i = before - 1
            while i >= 0 { moveRow(i, to: i + n); i -= 1 }
            start += n
        } else {
            for i in range.upperBound..<count { moveRow(i, to: i - n) }
        }
        count -= n
        shrinkIfSparse()
    }

    private func shrinkIfSparse() {
        if count <= capacity / 2 && capacity > Self.minimumCapacity {
            reallocate(to: count + max(Self.minimumCapacity, count / 16))
        }
    }

    /// Drops every row and returns the memory (keeps a minimal allocation).
    func removeAll() {
        count = 0
        start = 0
        if capacity > Self.minimumCapacity { reallocate(to: Self.minimumCapacity) }
    }

    /// Reads row `j`'s key as f32.
    func key(_ j: Int, into out: UnsafeMutablePointer<Float>, headDim: Int) {
        Self.load(keys + j * keyRowBytes, type: keyType, into: out, headDim: headDim)
    }

    /// Reads row `j`'s value as f32.
    func value(_ j: Int, into out: UnsafeMutablePointer<Float>, headDim: Int) {
        Self.load(values + j * valueRowBytes, type: valueType, into: out, headDim: headDim)
    }

    static func load(_ src: UnsafeRawPointer, type: ElementType, into out: UnsafeMutablePointer<Float>, headDim: Int) {
        if type == .f32 {
            UnsafeMutableRawPointer(out).copyMemory(from: src, byteCount: headDim * 4)
        } else {
            kvk_dequantize(type.kernelType, src, out, headDim)
        }
    }

    /// Overwrites row `j`'s key from f32.
    func setKey(_ j: Int, from src: UnsafePointer<Float>, headDim: Int) {
        Self.store(src, as: keyType, into: keys + j * keyRowBytes, headDim: headDim)
    }

    func setValue(_ j: Int, from src: UnsafePointer<Float>, headDim: Int) {
        Self.store(src, as: valueType, into: values + j * valueRowBytes, headDim: headDim)
    }

    func setPosition(_ j: Int, _ p: Int32) { positions[j] = p }

    func view() -> KVHeadView {
        KVHeadView(keys: UnsafeRawPointer(keys), values: UnsafeRawPointer(values),
                   positions: UnsafePointer(positions), count: count, keyType: keyType, valueType: valueType,
                   keyStride: keyRowBytes, valueStride: valueRowBytes)
    }
}
