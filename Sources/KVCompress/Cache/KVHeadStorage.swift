import CKVKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#elseif canImport(Musl)
import Musl
#endif

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
    /// Each row's log-count (0: one token; see ``KVCache/merge(layer:head:rows:)``), allocated when
    /// the head first holds a merged entry.
    private var logCountAlloc: UnsafeMutablePointer<Float>?
    private var start = 0
    private(set) var count = 0
    private(set) var capacity: Int
    /// Counts the changes to existing rows (everything but appending): a copy of the rows made
    /// when it had this value, extended by the rows appended since, equals the rows
    /// (`KVCache`'s GPU mirror relies on it).
    private(set) var edits = 0

    /// Rows allocated up front and kept as headroom after a shrink.
    static let minimumCapacity = 16
    static let alignment = 64

    /// Creates empty storage whose key rows hold `keyWidth` elements (default `headDim`; fewer for
    /// ThinK's pruned keys) and value rows `headDim`.
    init(keyType: ElementType, valueType: ElementType, headDim: Int, keyWidth: Int? = nil) {
        self.keyType = keyType
        self.valueType = valueType
        keyRowBytes = keyType.byteCount(elements: keyWidth ?? headDim)
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
        logCountAlloc?.deallocate()
    }

    /// Row 0's key, value and position.
    var keys: UnsafeMutableRawPointer { keyAlloc + start * keyRowBytes }
    var values: UnsafeMutableRawPointer { valueAlloc + start * valueRowBytes }
    var positions: UnsafeMutablePointer<Int32> { positionAlloc + start }
    /// Row 0's log-count (nil while the head holds no merged entry).
    var logCounts: UnsafeMutablePointer<Float>? { logCountAlloc.map { $0 + start } }

    /// Bytes of one entry: key row + value row + its Int32 position (+ its f32 log-count once the
    /// head holds merged entries).
    var bytesPerEntry: Int {
        keyRowBytes + valueRowBytes + MemoryLayout<Int32>.size + (logCountAlloc == nil ? 0 : MemoryLayout<Float>.size)
    }

    /// Gives every row a log-count (0: one token), so that rows can stand for merged tokens.
    func enableLogCounts() {
        edits += 1
        guard logCountAlloc == nil else { return }
        let c = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        c.initialize(repeating: 0, count: capacity)
        logCountAlloc = c
    }

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
        if let old = logCounts {
            let c = UnsafeMutablePointer<Float>.allocate(capacity: newCap)
            c.initialize(repeating: 0, count: newCap)
            c.update(from: old, count: count)
            logCountAlloc!.deallocate()
            logCountAlloc = c
        }
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
        if let c = logCounts { UnsafeMutableRawPointer(logCountAlloc!).copyMemory(from: c, byteCount: count * 4) }
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

    /// Appends one row converted from f32 (`headDim` elements each; the key `keyWidth` when given).
    func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>, position: Int32, headDim: Int, keyWidth: Int? = nil) {
        reserve(1)
        Self.store(key, as: keyType, into: keys + count * keyRowBytes, headDim: keyWidth ?? headDim)
        Self.store(value, as: valueType, into: values + count * valueRowBytes, headDim: headDim)
        positions[count] = position
        logCounts?[count] = 0
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
        if let c = logCounts { c[dst] = c[src] }
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
        edits += 1
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
        edits += 1
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
        edits += 1
        count = 0
        start = 0
        logCountAlloc?.deallocate()
        logCountAlloc = nil
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
        edits += 1
        Self.store(src, as: keyType, into: keys + j * keyRowBytes, headDim: headDim)
    }

    func setValue(_ j: Int, from src: UnsafePointer<Float>, headDim: Int) {
        edits += 1
        Self.store(src, as: valueType, into: values + j * valueRowBytes, headDim: headDim)
    }

    func setPosition(_ j: Int, _ p: Int32) {
        edits += 1
        positions[j] = p
    }

    /// Row `j`'s log-count (0 for a row that is one token).
    func logCount(_ j: Int) -> Float { logCounts?[j] ?? 0 }

    /// Replaces rows `range` (two or more) by one entry whose key and value are their means, each row
    /// weighted by the tokens it stands for, counting all their tokens, at the last row's position.
    func merge(_ range: Range<Int>, headDim d: Int) {
        precondition(range.count >= 2 && range.lowerBound >= 0 && range.upperBound <= count)
        enableLogCounts()
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 3 * d)
        defer { buffer.deallocate() }
        let (keySum, valueSum, row) = (buffer, buffer + d, buffer + 2 * d)
        keySum.initialize(repeating: 0, count: 2 * d)
        // Weights relative to the largest count, so that long merges stay in range.
        let counts = range.map { Double(logCount($0)) }
        let top = counts.max()!
        var total = 0.0
        for (j, c) in zip(range, counts) {
            let w = exp(c - top)
            total += w
            key(j, into: row, headDim: d)
            kvk_axpy_f32(Float(w), row, keySum, d)
            value(j, into: row, headDim: d)
            kvk_axpy_f32(Float(w), row, valueSum, d)
        }
        kvk_scale_f32(Float(1 / total), keySum, 2 * d)
        let last = range.upperBound - 1
        setKey(last, from: keySum, headDim: d)
        setValue(last, from: valueSum, headDim: d)
        logCounts![last] = Float(top + log(total))
        remove(range.lowerBound..<last)
    }

    func view() -> KVHeadView {
        KVHeadView(keys: UnsafeRawPointer(keys), values: UnsafeRawPointer(values),
                   positions: UnsafePointer(positions), count: count, keyType: keyType, valueType: valueType,
                   keyStride: keyRowBytes, valueStride: valueRowBytes, logCounts: logCounts.map { UnsafePointer($0) })
    }
}
