/// One KV head's stored entries (or one part of them), as attention reads them: `count` rows of
/// keys and values, each with its original position (ascending).
///
/// Keys are rows of ``keyType``, or, with ``keyGroups``, KIVI code rows whose per-channel scale
/// and min are shared by groups of consecutive rows. A head whose entries live in several
/// representations at once is a list of views (its parts); the `Attention` functions that take
/// `parts:` merge them exactly.
///
/// A view borrows memory owned elsewhere (a KVCompress `KVCache` head, a tensor): it is valid only while
/// that storage is alive and unchanged.
public struct KVHeadView: @unchecked Sendable {
    /// Row `j`'s key at `keys + j * keyStride`.
    public var keys: UnsafeRawPointer
    /// Row `j`'s value at `values + j * valueStride`.
    public var values: UnsafeRawPointer
    /// Original position of each row, ascending.
    public var positions: UnsafePointer<Int32>
    /// Number of rows.
    public var count: Int
    /// Key element type (f32, f16, bf16, q8_0, q4_0, q4_1, q2_1); not used with ``keyGroups``.
    public var keyType: ElementType
    /// Value element type (same choices).
    public var valueType: ElementType
    /// Bytes between consecutive keys.
    public var keyStride: Int
    /// Bytes between consecutive values.
    public var valueStride: Int
    /// nil: keys are rows of ``keyType``. Otherwise keys are KIVI code rows (`keyStride` bytes
    /// apart) in these groups.
    public var keyGroups: KVKeyGroups?
    /// nil: every row is one token. Otherwise row `j` stands for `exp(logCounts[j])` tokens and
    /// attention adds `logCounts[j]` to its logit (0 for an ordinary row).
    public var logCounts: UnsafePointer<Float>?

    /// Creates a view.
    public init(keys: UnsafeRawPointer, values: UnsafeRawPointer, positions: UnsafePointer<Int32>, count: Int,
                keyType: ElementType, valueType: ElementType, keyStride: Int, valueStride: Int,
                keyGroups: KVKeyGroups? = nil, logCounts: UnsafePointer<Float>? = nil) {
        precondition(count >= 0, "negative row count")
        self.keyGroups = keyGroups
        self.logCounts = logCounts
        self.keys = keys
        self.values = values
        self.positions = positions
        self.count = count
        self.keyType = keyType
        self.valueType = valueType
        self.keyStride = keyStride
        self.valueStride = valueStride
    }

    /// Rows whose position is at most `position` (rows are in ascending position order).
    /// - Complexity: O(log count).
    @inlinable
    public func visibleCount(upTo position: Int32) -> Int {
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if positions[mid] <= position { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
