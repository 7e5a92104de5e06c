import CKVCuda

/// Device memory of the CUDA backend, freed when the buffer is released.
public final class CudaBuffer: Sendable {
    /// The device address of the first byte.
    public let address: UInt64
    /// Size in bytes.
    public let byteCount: Int

    /// Allocates `byteCount` bytes (at least 1) of device memory.
    /// - Throws: ``KVError/backend(_:)`` without a GPU or when the device memory is exhausted.
    public init(byteCount: Int) throws(KVError) {
        _ = try CudaDevice.shared()
        var address: UInt64 = 0
        try CudaDevice.check(kvcu_malloc(max(1, byteCount), &address))
        self.address = address
        self.byteCount = byteCount
    }

    /// Allocates a buffer holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) throws(KVError) {
        try self.init(byteCount: bytes.count)
        try upload(bytes, at: 0)
    }

    /// Allocates a buffer holding a copy of `array`'s elements.
    public convenience init<T>(copying array: [T]) throws(KVError) {
        try self.init(byteCount: array.count * MemoryLayout<T>.stride)
        try upload(array, at: 0)
    }

    deinit { _ = kvcu_free(address) }

    /// Copies `bytes` to the buffer at byte `offset`.
    /// - Precondition: the range lies inside the buffer.
    public func upload(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(KVError) {
        precondition(offset >= 0 && offset + bytes.count <= byteCount, "upload past the end of a CUDA buffer")
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try CudaDevice.check(kvcu_upload(address + UInt64(offset), base, bytes.count))
    }

    /// Copies `array`'s elements to the buffer at byte `offset`.
    /// - Precondition: they fit inside the buffer.
    public func upload<T>(_ array: [T], at offset: Int) throws(KVError) {
        var failure: KVError?
        array.withUnsafeBytes { bytes in
            do throws(KVError) { try upload(bytes, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// `count` elements of `T` read from byte `offset` of the buffer (waits for queued work).
    /// - Precondition: they lie inside the buffer.
    public func download<T: BitwiseCopyable>(_: T.Type, count: Int, from offset: Int) throws(KVError) -> [T] {
        var failure: KVError?
        let result = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            do throws(KVError) { try download(into: UnsafeMutableRawBufferPointer(buffer), from: offset) } catch {
                failure = error
            }
            initialized = count  // (uninitialized only when failing, and then thrown away unread)
        }
        if let failure { throw failure }
        return result
    }

    /// Copies `bytes.count` bytes from byte `offset` of the buffer to `bytes` (waits for queued work).
    /// - Precondition: the range lies inside the buffer.
    public func download(into bytes: UnsafeMutableRawBufferPointer, from offset: Int) throws(KVError) {
        precondition(offset >= 0 && offset + bytes.count <= byteCount, "download past the end of a CUDA buffer")
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try CudaDevice.check(kvcu_download(base, address + UInt64(offset), bytes.count))
    }

    /// Copies `count` bytes from byte `sourceOffset` of `source` to byte `offset` of this buffer, on
    /// the device, in stream order.
    public func copy(from source: CudaBuffer, sourceOffset: Int = 0, count: Int, to offset: Int = 0) throws(KVError) {
        precondition(sourceOffset >= 0 && sourceOffset + count <= source.byteCount && offset >= 0
                     && offset + count <= byteCount, "device copy out of range")
        try CudaDevice.check(kvcu_copy(address + UInt64(offset), source.address + UInt64(sourceOffset), count))
    }
}
