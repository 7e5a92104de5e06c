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
    /// nil: this part's rows follow the previous parts' rows in the head (the head's rows are the
    /// parts' concatenation). Otherwise row `j` of this part is head row `headRows[j]` (ascending):
    /// parts whose positions interleave, such as ZipCache's two precisions, each list the head rows
    /// they hold; they come first in a head's parts and together hold its first rows, and a part
    /// without `headRows` after them takes the head rows after theirs. Column sums and observed
    /// probabilities are reported in head-row order.
    public var headRows: UnsafePointer<Int32>?
    /// nil, or per channel the factor every value row of this part is multiplied by (ZipCache's
    /// channel-separable value quantization stores `value / scale` and attention multiplies the
    /// part's weighted sum by `scale`).
    public var valueChannelScales: UnsafePointer<Float>?
    /// nil: each key row holds the head's `headDim` channels. Otherwise each key row holds only
    /// these channels of them (ascending, ``keyChannelCount`` of them; ThinK's pruned keys): the
    /// other channels count as 0 in `q . k`.
    public var keyChannels: UnsafePointer<Int32>?
    /// Number of ``keyChannels`` (0 when nil).
    public var keyChannelCount: Int

    /// Creates a view.
    public init(keys: UnsafeRawPointer, values: UnsafeRawPointer, positions: UnsafePointer<Int32>, count: Int,
                keyType: ElementType, valueType: ElementType, keyStride: Int, valueStride: Int,
                keyGroups: KVKeyGroups? = nil, logCounts: UnsafePointer<Float>? = nil,
                headRows: UnsafePointer<Int32>? = nil, valueChannelScales: UnsafePointer<Float>? = nil,
                keyChannels: UnsafePointer<Int32>? = nil, keyChannelCount: Int = 0) {
        precondition(count >= 0, "negative row count")
        precondition(keyChannels == nil || keyChannelCount > 0, "a key channel list needs its count")
        self.keyChannels = keyChannels
        self.keyChannelCount = keyChannels == nil ? 0 : keyChannelCount
        self.keyGroups = keyGroups
        self.logCounts = logCounts
        self.headRows = headRows
        self.valueChannelScales = valueChannelScales
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

    /// Whether attention reads this part's keys through ``scores(_:queryStride:count:rows:_:headDim:scale:out:outStride:)``
    /// rather than the fused row kernel (KIVI groups, pruned key channels).
    public var scoresSeparately: Bool { keyGroups != nil || keyChannels != nil }

    /// How many of this part's rows are among its head's first `n` rows, given the rows of the
    /// parts before it (`offset`).
    @inlinable
    public func rowsAmongFirst(_ n: Int, offset: Int) -> Int {
        guard let h = headRows else { return min(max(0, n - offset), count) }
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Int(h[mid]) < n { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
