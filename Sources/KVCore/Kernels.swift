import CKVKernels

/// Run-time control of the C kernels (`CKVKernels`): which instruction set they use.
///
/// The kernels pick an implementation once, at first use: on x86_64 AVX-512 (F, BW, VL, DQ and
/// VNNI) when the CPU has it, plus AMX-INT8 tiles where the CPU and Linux offer them, else AVX2 +
/// FMA + F16C; NEON on arm64; portable scalar C otherwise.
/// The environment variables `KVK_FORCE_SCALAR=1` or `KVK_ISA=scalar|avx2|avx512|amx|neon` (read at
/// first use) and ``use(_:)`` / ``forceScalar`` (at any time) select another supported path: for
/// tests, for comparing paths in a benchmark, and for checking a suspected SIMD bug.
public enum Kernels {
    /// An instruction set a kernel implementation targets.
    public enum ISA: Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// Portable C, no explicit SIMD.
        case scalar
        /// x86_64 AVX2 with FMA and F16C.
        case avx2
        /// x86_64 AVX-512 (F, BW, VL, DQ, VNNI); kernels without an AVX-512 version use AVX2.
        case avx512
        /// ``avx512`` plus AMX-INT8 tiles (Linux): attention scores over q8_0 keys with head dim 64
        /// (256 keys or more per call); every other kernel is the AVX-512 one.
        case amx
        /// AArch64 Advanced SIMD (NEON).
        case neon

        init(_ isa: kvk_isa) {
            switch isa {
            case KVK_ISA_AVX2: self = .avx2
            case KVK_ISA_AVX512: self = .avx512
            case KVK_ISA_AMX: self = .amx
            case KVK_ISA_NEON: self = .neon
            default: self = .scalar
            }
        }

        var kernelISA: kvk_isa {
            switch self {
            case .scalar: return KVK_ISA_SCALAR
            case .avx2: return KVK_ISA_AVX2
            case .avx512: return KVK_ISA_AVX512
            case .amx: return KVK_ISA_AMX
            case .neon: return KVK_ISA_NEON
            }
        }

        /// `"scalar"`, `"avx2"`, `"avx512"`, `"amx"` or `"neon"` (the values `KVK_ISA` accepts).
        public var description: String {
            switch self {
            case .scalar: return "scalar"
            case .avx2: return "avx2"
            case .avx512: return "avx512"
            case .amx: return "amx"
            case .neon: return "neon"
            }
        }
    }

    /// The instruction set the kernels use now.
    public static var isa: ISA { ISA(kvk_active_isa()) }

    /// The best instruction set this CPU supports, ignoring any forcing.
    public static var bestISA: ISA { ISA(kvk_best_isa()) }

    /// Every instruction set this CPU and build can run, best first (always ends with `.scalar`).
    public static var supportedISAs: [ISA] {
        [.amx, .avx512, .avx2, .neon, .scalar].filter { kvk_isa_supported($0.kernelISA) != 0 }
    }

    /// Switches every later kernel call to `isa` (process-wide, thread-safe; calls already running
    /// finish on their path). Returns `false`, changing nothing, when `isa` is not supported here.
    @discardableResult
    public static func use(_ isa: ISA) -> Bool { kvk_set_isa(isa.kernelISA) != 0 }

    /// Whether the scalar path is in use although a SIMD path exists. Setting `true` selects the
    /// scalar path, `false` the best one.
    public static var forceScalar: Bool {
        get { kvk_force_scalar_enabled() != 0 }
        set { kvk_set_force_scalar(newValue ? 1 : 0) }
    }
}
