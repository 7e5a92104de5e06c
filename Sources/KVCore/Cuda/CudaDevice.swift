import CKVCuda

/// The GPU the CUDA backend runs on (device 0, or `$KVCOMPRESS_CUDA_DEVICE`), opened once per
/// process through the driver library loaded at run time (`libcuda.so.1`, or
/// `$KVCOMPRESS_CUDA_DRIVER`), with the kernels loaded from the PTX embedded in `CKVCuda` (or the
/// file `$KVCOMPRESS_CUDA_PTX`).
///
/// Without a driver or a GPU, ``shared()`` throws ``KVError/backend(_:)`` and
/// ``unavailableReason`` says why: a normal state, never a crash.
public final class CudaDevice: Sendable {
    /// The device's name.
    public let name: String
    /// Device memory in bytes.
    public let totalMemory: Int
    /// Compute capability (major, minor), e.g. (9, 0) for H100 / H200.
    public let computeCapability: (major: Int, minor: Int)
    /// Streaming multiprocessors.
    public let multiprocessors: Int
    /// The driver's CUDA version, e.g. 12040 for 12.4.
    public let driverVersion: Int

    private init(_ info: kvcu_device_info) {
        var info = info
        name = withUnsafeBytes(of: &info.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        totalMemory = Int(info.total_memory)
        computeCapability = (Int(info.compute_major), Int(info.compute_minor))
        multiprocessors = Int(info.multiprocessors)
        driverVersion = Int(info.driver_version)
    }

    private static let opened: Result<CudaDevice, KVError> = {
        do throws(KVError) {
            try check(kvcu_initialize())
            var info = kvcu_device_info()
            try check(kvcu_device(&info))
            return .success(CudaDevice(info))
        } catch {
            return .failure(error)
        }
    }()

    /// The process's GPU, opened on first use.
    /// - Throws: ``KVError/backend(_:)`` when there is no driver, no GPU (compute capability 8.0 or
    ///   later) or the kernels do not load; the message says which.
    public static func shared() throws(KVError) -> CudaDevice { try opened.get() }

    /// nil when ``shared()`` succeeds; otherwise why the CUDA backend is unavailable here.
    public static var unavailableReason: String? {
        if case let .failure(error) = opened { return error.description }
        return nil
    }

    /// Whether a GPU would be found through the driver library at `driverPath`, without opening
    /// it: nil when one would be, otherwise the reason (for example, no such library).
    public static func probe(driverPath: String) -> String? {
        do throws(KVError) {
            try check(kvcu_probe(driverPath))
            return nil
        } catch {
            return error.description
        }
    }

    /// Free and total device memory in bytes.
    public func memory() throws(KVError) -> (free: Int, total: Int) {
        var free: UInt64 = 0, total: UInt64 = 0
        try Self.check(kvcu_memory(&free, &total))
        return (Int(free), Int(total))
    }

    /// Waits until the GPU has finished all queued work.
    public func synchronize() throws(KVError) { try Self.check(kvcu_synchronize()) }

    /// Turns a `CKVCuda` status into ``KVError/backend(_:)`` with the shim's message.
    static func check(_ status: Int32) throws(KVError) {
        guard status != 0 else { return }
        let message = String(cString: kvcu_last_error())
        throw .backend("CUDA: \(message.isEmpty ? "status \(status)" : message)")
    }
}
