/// Where attention over a cache runs.
///
/// `.cpu` runs the SIMD kernels of `CKVKernels` (always available). `.cuda` runs the kernels of
/// `CKVCuda` on an NVIDIA GPU through the driver library loaded at run time; it throws
/// ``KVError/backend(_:)`` with the reason where there is none. `.automatic` takes `.cuda` when a
/// GPU is usable and `.cpu` otherwise.
public enum KVBackend: String, Sendable, CaseIterable, CustomStringConvertible {
    /// The CPU kernels.
    case cpu
    /// An NVIDIA GPU through CUDA (compute capability 8.0 or later).
    case cuda
    /// CUDA when a GPU is usable, the CPU otherwise.
    case automatic

    /// The backend this choice runs on here: `.automatic` becomes `.cuda` or `.cpu`.
    /// - Throws: ``KVError/backend(_:)`` for `.cuda` where no GPU is usable (the reason included).
    public func resolved() throws(KVError) -> KVBackend {
        switch self {
        case .cpu: return .cpu
        case .cuda:
            _ = try CudaDevice.shared()
            return .cuda
        case .automatic:
            return CudaDevice.unavailableReason == nil ? .cuda : .cpu
        }
    }

    /// The name (`cpu`, `cuda`, `automatic`).
    public var description: String { rawValue }
}
