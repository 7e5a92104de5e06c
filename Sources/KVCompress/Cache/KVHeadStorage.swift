import CKVKernels

/// Owned, growable storage of one KV head of one layer: rows of keys and values in their element
/// types plus each row's original position, in ascending position order.
///
/// Rows live in three separate allocations (keys, values, positions) of `capacity` rows each.
/// Appending grows the capacity geometrically; ``retain(_:)`` compacts the kept rows in place and
/// reallocates to a tight capacity when the row count falls well below it, so evicted memory is
/// returned to the allocator.
final class KVHeadStorage {
    let keyType: ElementType
    let valueType: ElementType
    let keyRowBytes: Int
    let valueRowBytes: Int
    private(set) var keys: UnsafeMutableRawPointer
    private(set) var values: UnsafeMutableRawPointer
    private(set) var positions: UnsafeMutablePointer<Int32>
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
        keys = .allocate(byteCount: capacity * keyRowBytes, alignment: Self.alignment)
        values = .allocate(byteCount: capacity * valueRowBytes, alignment: Self.alignment)
        positions = .allocate(capacity: capacity)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
        positions.deallocate()
    }

    /// Bytes of one entry: key row + value row + its Int32 position.
    var bytesPerEntry: Int { keyRowBytes + valueRowBytes + MemoryLayout<Int32>.size }

    /// Bytes currently allocated for rows (capacity, not count).
    var allocatedBytes: Int { capacity * bytesPerEntry }

    var lastPosition: Int32? { count > 0 ? positions[count - 1] : nil }

    /// Reallocates to exactly `newCapacity` rows (>= count), copying the live rows.
    private func reallocate(to newCapacity: Int) {
        precondition(newCapacity >= count)
        let newCap = max(newCapacity, 1)
        let k = UnsafeMutableRawPointer.allocate(byteCount: newCap * keyRowBytes, alignment: Self.alignment)
        let v = UnsafeMutableRawPointer.allocate(byteCount: newCap * valueRowBytes, alignment: Self.alignment)
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: newCap)
        k.copyMemory(from: keys, byteCount: count * keyRowBytes)
        v.copyMemory(from: values, byteCount: count * valueRowBytes)
        p.update(from: positions, count: count)
        keys.deallocate()
        values.deallocate()
        positions.deallocate()
        keys = k
        values = v
        positions = p
        capacity = newCap
    }

    /// Makes room for `extra` more rows.
    func reserve(_ extra: Int) {
        let needed = count + extra
        if needed > capacity {
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

    /// Keeps the rows at `sortedIndices` (strictly ascending, in range), compacting in place, and
    /// shrinks the allocation when the count falls to half the capacity or below.
    func retain(sortedIndices: [Int]) {
        var out = 0
        for src in sortedIndices {
            if src != out {
                (keys + out * keyRowBytes).copyMemory(from: keys + src * keyRowBytes, byteCount: keyRowBytes)
                (values + out * valueRowBytes).copyMemory(from: values + src * valueRowBytes, byteCount: valueRowBytes)
                positions[out] = positions[src]
            }
            out += 1
        }
        count = out
        if count <= capacity / 2 && capacity > Self.minimumCapacity {
            reallocate(to: count + max(Self.minimumCapacity, count / 16))
        }
    }

    /// Drops every row and returns the memory (keeps a minimal allocation).
    func removeAll() {
        count = 0
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

    func setPosition(_ j: Int, _ p: Int32) { positions[j] = p }

    func view() -> KVHeadView {
        KVHeadView(keys: UnsafeRawPointer(keys), values: UnsafeRawPointer(values),
                   positions: UnsafePointer(positions), count: count, keyType: keyType, valueType: valueType,
                   keyStride: keyRowBytes, valueStride: valueRowBytes)
    }
}
