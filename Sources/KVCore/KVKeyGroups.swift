import CKVKernels

/// KIVI keys of one head part: rows of `bits`-bit codes, and per group of consecutive rows one
/// f16 scale and one f16 min per channel (`key = scale * code + min`, see `kvk_kivi_scores_multi`
/// in CKVKernels for the code layout).
///
/// Group `i` covers rows `groupEnds[i - 1] ..< groupEnds[i]` (from row 0 for `i == 0`); its
/// parameters are `2 * headDim` f16 values at `params + i * 2 * headDim`: the scales, then the
/// mins. Borrowed memory, like ``KVHeadView``.
public struct KVKeyGroups: @unchecked Sendable {
    /// Bits per code: 2 or 4.
    public var bits: Int
    /// The groups' parameters, `2 * headDim` f16 values per group.
    public var params: UnsafePointer<UInt16>
    /// One past each group's last row, ascending; the last equals the view's row count.
    public var groupEnds: UnsafePointer<Int32>
    /// Number of groups.
    public var groupCount: Int

    /// Creates a description of groups.
    public init(bits: Int, params: UnsafePointer<UInt16>, groupEnds: UnsafePointer<Int32>, groupCount: Int) {
        precondition(bits == 2 || bits == 4, "KIVI codes have 2 or 4 bits")
        self.bits = bits
        self.params = params
        self.groupEnds = groupEnds
        self.groupCount = groupCount
    }

    /// The group holding row `row`.
    /// - Complexity: O(log groupCount).
    public func group(ofRow row: Int) -> Int {
        var lo = 0, hi = groupCount
        while lo < hi {
            let mid = (lo + hi) / 2
            if Int(groupEnds[mid]) <= row { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

extension KVHeadView {
    /// Scores of `m` queries (query `h` at `queries + h * queryStride`) against rows
    /// `first ..< first + n`: `out[h * outStride + j] = scale * dot(q_h, key_{first + j})`, reading
    /// row keys, pruned key rows (the queries' kept channels) or KIVI codes in place.
    func scores(_ queries: UnsafePointer<Float>, queryStride: Int, count m: Int, rows first: Int, _ n: Int,
                headDim d: Int, scale: Float, out: UnsafeMutablePointer<Float>, outStride: Int) {
        guard n > 0 else { return }
        defer { addLogCounts(rows: first, n, count: m, to: out, outStride: outStride) }
        if let channels = keyChannels {  // pruned keys: the queries' kept channels against the rows
            let c = keyChannelCount
            withUnsafeTemporaryAllocation(of: Float.self, capacity: m * c) { gathered in
                for h in 0..<m {
                    for i in 0..<c { gathered[h * c + i] = queries[h * queryStride + Int(channels[i])] }
                }
                kvk_scores_multi(keyType.kernelType, gathered.baseAddress!, c, m, keys + first * keyStride, keyStride, n, c,
                                 scale, out, outStride)
            }
            return
        }
        guard let g = keyGroups else {
            kvk_scores_multi(keyType.kernelType, queries, queryStride, m, keys + first * keyStride, keyStride, n, d,
                             scale, out, outStride)
            return
        }
        var group = g.group(ofRow: first)
        var r = first
        while r < first + n {
            let end = min(first + n, Int(g.groupEnds[group]))
            kvk_kivi_scores_multi(Int32(g.bits), queries, queryStride, m, keys + r * keyStride, keyStride,
                                  g.params + group * 2 * d, end - r, d, scale, out + (r - first), outStride)
            r = end
            group += 1
        }
    }

    /// Adds the merged rows' log-counts (``logCounts``) to `m` score rows of rows `first ..< first + n`
    /// (nothing when the view has none).
    @inlinable
    public func addLogCounts(rows first: Int, _ n: Int, count m: Int, to out: UnsafeMutablePointer<Float>,
                             outStride: Int) {
        guard let c = logCounts else { return }
        for h in 0..<m {
            let row = out + h * outStride
            for j in 0..<n { row[j] += c[first + j] }
        }
    }
}
