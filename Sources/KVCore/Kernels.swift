import CKVKernels

/// Run-time control of the C kernels (`CKVKernels`): which instruction set they use.
///
/// The kernels pick an implementation once, at first use: AVX2 + FMA + F16C on x86_64 CPUs that
/// have all three, NEON on arm64, portable scalar C otherwise. Setting the environment variable
/// `KVK_FORCE_SCALAR=1` before first use, or ``forceScalar`` at any time, selects the scalar path
/// (slow; meant for tests and for checking a suspected SIMD bug).
public enum Kernels {
    /// An instruction set a kernel implementation targets.
    public enum ISA: Sendable, Hashable, CustomStringConvertible {
        /// Portable C, no explicit SIMD.
        case scalar
        /// x86_64 AVX2 with FMA and F16C.
        case avx2
        /// AArch64 Advanced SIMD (NEON).
        case neon

        init(_ isa: kvk_isa) {
            switch isa {
            case KVK_ISA_AVX2: self = .avx2
            case KVK_ISA_NEON: self = .neon
            default: self = .scalar
            }
        }

        /// `"scalar"`, `"avx2"` or `"neon"`.
        public var description: String {
            switch self {
            case .scalar: return "scalar"
            case .avx2: return "avx2"
            case .neon: return "neon"
            }
        }
    }

    /// The instruction set the kernels use now (``bestISA`` unless the scalar path is forced).
    public static var isa: ISA { ISA(kvk_active_isa()) }

    /// The best instruction set this CPU supports, ignoring any forcing.
    public static var bestISA: ISA { ISA(kvk_best_isa()) }

    /// Whether the scalar path is forced. Setting it switches every later kernel call (process-wide,
    /// thread-safe); calls already running finish on the path they started with.
    public static var forceScalar: Bool {
        get { kvk_force_scalar_enabled() != 0 }
        set { kvk_set_force_scalar(newValue ? 1 : 0) }
    }
}
