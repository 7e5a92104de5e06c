import CKVKernels

/// An owned, contiguous, row-major tensor of one ``ElementType`` with value semantics
/// (copy-on-write storage).
///
/// Block types store each row of the last dimension in 32-element blocks, so the last dimension
/// must be a multiple of 32 for them. Conversion to and from `Float` goes through the C kernels
/// (`kvk_quantize` / `kvk_dequantize`), with GGML's rounding for the block formats.
public struct Tensor: Sendable {
    /// Dimensions, outermost first (the last one is contiguous).
    public let shape: [Int]
    /// Element type.
    public let elementType: ElementType
    private var storage: Storage

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Bytes of element data.
    public var byteCount: Int { storage.byteCount }

    /// A zero-filled tensor.
    /// - Throws: `KVError.shapeMismatch` for a negative dimension, or a last dimension that is not a
    ///   multiple of the type's block size.
    public init(zeros shape: [Int], type: ElementType) throws(KVError) {
        try Self.validate(shape, type)
        self.shape = shape
        self.elementType = type
        let bytes = type.byteCount(elements: shape.reduce(1, *))
        storage = Storage(byteCount: bytes)
        storage.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }

    /// A tensor holding `values` (row-major) converted to `type`.
    /// - Throws: `KVError.shapeMismatch` when `values.count` is not the product of `shape`, or as
    ///   ``init(zeros:type:)``.
    public init(_ values: [Float], shape: [Int], type: ElementType = .f32) throws(KVError) {
        try Self.validate(shape, type)
        let n = shape.reduce(1, *)
        guard values.count == n else {
            throw .shapeMismatch("\(values.count) values do not fill a tensor of shape \(shape) (\(n) elements)")
        }
        self.shape = shape
        self.elementType = type
        storage = Storage(byteCount: type.byteCount(elements: n))
        let s = storage
        values.withUnsafeBufferPointer { kvk_quantize(type.kernelType, $0.baseAddress, s.pointer, n) }
    }

    private static func validate(_ shape: [Int], _ type: ElementType) throws(KVError) {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw .shapeMismatch("negative dimension in shape \(shape)") }
        var n = 1
        for d in shape {
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow else { throw .shapeMismatch("shape \(shape) has too many elements") }
            n = p
        }
        let last = shape.last ?? 1
        guard last % type.blockSize == 0 else {
            throw .shapeMismatch("\(type) stores rows in blocks of \(type.blockSize); the last dimension \(last) is not a multiple")
        }
    }

    /// The elements as `Float` (dequantized for block types).
    public func floats() -> [Float] {
        let n = count
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            if n > 0 { kvk_dequantize(elementType.kernelType, storage.pointer, buffer.baseAddress!, n) }
            initialized = n
        }
    }

    /// The same elements converted to another type.
    public func converted(to type: ElementType) throws(KVError) -> Tensor {
        try Tensor(floats(), shape: shape, type: type)
    }

    /// Read access to the raw element bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage.pointer, count: storage.byteCount))
    }

    /// Write access to the raw element bytes (copies shared storage first).
    public mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        return try body(UnsafeMutableRawBufferPointer(start: storage.pointer, count: storage.byteCount))
    }

    /// Heap buffer shared by copies until one of them writes.
    final class Storage: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let byteCount: Int

        init(byteCount: Int) {
            self.byteCount = byteCount
            pointer = .allocate(byteCount: max(byteCount, 1), alignment: 64)
        }

        func copy() -> Storage {
            let s = Storage(byteCount: byteCount)
            s.pointer.copyMemory(from: pointer, byteCount: byteCount)
            return s
        }

        deinit { pointer.deallocate() }
    }
}
