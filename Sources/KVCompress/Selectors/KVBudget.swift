/// How many entries a policy keeps.
public enum KVBudget: Sendable, Equatable, CustomStringConvertible {
    /// Fraction of each head's entries **removed** (kvpress `compression_ratio`), in `[0, 1)`:
    /// a head with `L` entries keeps `max(1, Int(Double(L) * (1 - ratio)))`.
    case compressionRatio(Double)
    /// Entries kept per KV head per layer (>= 1).
    case tokens(Int)
    /// Bytes for the whole cache (every layer and head); converted to entries per head with
    /// ``KVCache/entryCount(forHeadBytes:)`` of `bytes / (layers * kvHeads)` (at least 1): for row
    /// formats `bytes / (layers * kvHeads * bytesPerEntry)`; for KIVI counting the full-precision
    /// residual at its largest, so the cache never holds more than the budget.
    case bytes(Int)

    /// Checks the budget's range.
    /// - Throws: `KVError.invalidParameter` for a ratio outside `[0, 1)` or a non-positive count.
    public func validated() throws(KVError) -> KVBudget {
        switch self {
        case .compressionRatio(let r):
            guard r.isFinite, r >= 0, r < 1 else {
                throw .invalidParameter(name: "compressionRatio", value: "\(r)", expected: "a fraction in [0, 1)")
            }
        case .tokens(let n):
            guard n >= 1 else { throw .invalidParameter(name: "tokens", value: "\(n)", expected: ">= 1 entries per head") }
        case .bytes(let b):
            guard b >= 1 else { throw .invalidParameter(name: "bytes", value: "\(b)", expected: ">= 1") }
        }
        return self
    }

    /// kvpress 0.5.5 `compute_n_kept`: `max(1, Int(Double(length) * (1 - ratio)))` in double
    /// precision with truncation (`length = 1510, ratio = 0.8` gives 301).
    public static func keptCount(length: Int, compressionRatio ratio: Double) -> Int {
        if ratio >= 1 { return 0 }
        return max(1, Int(Double(length) * (1 - ratio)))
    }

    /// Entries per head a `.tokens` or `.bytes` budget allows (nil for a ratio).
    public func fixedCapacity(cache: KVCache) -> Int? {
        switch self {
        case .compressionRatio: return nil
        case .tokens(let n): return n
        case .bytes(let b): return max(1, cache.entryCount(forHeadBytes: b / (cache.layers * cache.kvHeads)))
        }
    }

    /// The smallest rolling capacity a ratio budget leaves a head with while decoding (entries per
    /// head): a ratio applied to a short prompt (5 tokens at 0.5 keep 2) would otherwise leave a
    /// window so small that every generated token is evicted right after its own step.
    public static let minimumRollingCapacity = 64

    /// The capacity a rolling policy holds a head at after its first prompt was compressed to
    /// `kept` entries: the fixed capacity of a `.tokens` / `.bytes` budget, else
    /// `max(kept, minimumRollingCapacity)`.
    public func rollingCapacity(kept: Int, cache: KVCache) -> Int {
        fixedCapacity(cache: cache) ?? max(kept, Self.minimumRollingCapacity)
    }

    /// Entries to keep for a head that holds `length` entries (never more than `length`).
    public func keptCount(length: Int, cache: KVCache) -> Int {
        switch self {
        case .compressionRatio(let r): return min(length, Self.keptCount(length: length, compressionRatio: r))
        default: return min(length, fixedCapacity(cache: cache)!)
        }
    }

    /// `ratio(0.5)`, `tokens(256)`, `bytes(1048576)`.
    public var description: String {
        switch self {
        case .compressionRatio(let r): return "ratio(\(r))"
        case .tokens(let n): return "tokens(\(n))"
        case .bytes(let b): return "bytes(\(b))"
        }
    }
}
