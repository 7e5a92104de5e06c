import KVCore

/// How one side (keys or values) of a cache's entries is stored: rows of an element type, KIVI or
/// ZipCache.
///
/// - `rows(type)`: every entry's key (or value) is one row of `type` (`f32`, `f16`, `bf16`, `q8_0`,
///   `q4_0`, `q4_1`, `q2_1`), quantized on its own when appended.
/// - `kivi(bits:)`: KIVI (Liu et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV
///   Cache", arXiv 2402.02750; github.com/jy-yuan/KIVI) with 2 or 4 bits. Keys are quantized **per
///   channel** over groups of ``KVCache/kiviGroupSize`` consecutive entries (one f16 scale and min
///   per channel per group); values **per token** in groups of 32 channels (`q2_1` for 2 bits,
///   `q4_1` for 4). The newest entries stay in a full-precision (f16) residual of
///   ``KVCache/residualLength`` to `residualLength + kiviGroupSize - 1` entries; older ones move to
///   the quantized part one group at a time (see ``KVCache/compactResidual(layer:)``).
/// - `zipCache`: ZipCache (He et al., "ZipCache: Accurate and Efficient KV Cache Quantization with
///   Salient Token Identification", arXiv 2405.14256; github.com/ThisisBillhe/ZipCache), for keys
///   and values together: a ``KVCompressor`` splits each block of entries into salient ones (4 bits)
///   and the rest (2 bits) by normalized attention (``ZipCacheSettings``); keys per channel over
///   groups of up to 32 of a block's salient (or unimportant) entries, values per token (`q4_1` / `q2_1`) after
///   dividing each channel by a per-head scale (channel-separable token-wise quantization). New
///   entries wait in an f16 buffer until a block is full.
public enum KVEntryFormat: Hashable, Sendable, CustomStringConvertible {
    /// One row per entry in an element type.
    case rows(ElementType)
    /// KIVI with `bits` (2 or 4) bits per element.
    case kivi(bits: Int)
    /// ZipCache: salient entries at 4 bits, the others at 2 (keys and values both).
    case zipCache

    /// Every format a cache accepts, in the order command lines list them.
    public static let supported: [KVEntryFormat] =
        [.rows(.f32), .rows(.f16), .rows(.bf16), .rows(.q8_0), .rows(.q4_0), .rows(.q4_1), .rows(.q2_1),
         .kivi(bits: 2), .kivi(bits: 4), .zipCache]

    /// The names of ``supported`` as command lines write them (`f16`, `q8_0`, `kivi2`).
    public static var supportedNames: [String] { supported.map(\.description) }

    /// The supported format `name` names (any case), nil if none.
    public init?(name: String) {
        guard let f = Self.supported.first(where: { $0.description == name.lowercased() }) else { return nil }
        self = f
    }

    /// The lowercase name: the element type's GGML name (`q8_0`), `kivi2` / `kivi4` or `zipcache`.
    public var description: String {
        switch self {
        case .rows(let t): return t.description.lowercased()
        case .kivi(let bits): return "kivi\(bits)"
        case .zipCache: return "zipcache"
        }
    }

    /// Whether entries move to a quantized part once they leave the full-precision residual.
    public var isKIVI: Bool {
        if case .kivi = self { return true }
        return false
    }

    /// Whether entries are quantized in groups that share parameters (KIVI, ZipCache): such keys
    /// cannot be re-rotated or overwritten without quantizing them again.
    public var isGrouped: Bool {
        switch self {
        case .rows: return false
        case .kivi, .zipCache: return true
        }
    }

    /// The element type of this side's rows in a cache's row part (the f16 residual or buffer of
    /// KIVI and ZipCache).
    var rowType: ElementType {
        switch self {
        case .rows(let t): return t
        case .kivi, .zipCache: return .f16
        }
    }

    /// The element type of this side's rows in the quantized part (values: `q2_1` / `q4_1` for
    /// KIVI), nil for KIVI keys (channel groups, not rows).
    var packedRowType: ElementType? {
        switch self {
        case .rows(let t): return t
        case .kivi(let bits): return bits == 2 ? .q2_1 : .q4_1
        case .zipCache: return nil
        }
    }
}
