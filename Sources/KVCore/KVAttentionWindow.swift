/// A Λ-shaped attention pattern for one KV head (DuoAttention's streaming heads): a query at
/// position `p` sees the head's first ``sinks`` rows and the rows at positions `p - recent + 1 ... p`,
/// nothing in between.
///
/// `Attention.prefill` skips the key tiles a window hides (that is where a streaming head's
/// prefill saving comes from) and masks the rest exactly; decode attention reads every row a head
/// holds, so a policy that uses windows trims its heads to `sinks + recent - 1` rows between steps
/// (what the next token may see).
public struct KVAttentionWindow: Sendable, Equatable, CustomStringConvertible {
    /// Rows at the start of the head always visible (attention sinks).
    public let sinks: Int
    /// Positions visible before and including the query's own (>= 1).
    public let recent: Int

    /// Creates a window.
    /// - Precondition: `sinks >= 0`, `recent >= 1` (policies validate their parameters first).
    public init(sinks: Int, recent: Int) {
        precondition(sinks >= 0 && recent >= 1, "a window needs sinks >= 0 and recent >= 1")
        self.sinks = sinks
        self.recent = recent
    }

    /// `sinks + recent`.
    public var description: String { "\(sinks) + \(recent)" }

    /// The last position hidden from a query at `position` (rows after the sinks at this position
    /// or earlier are hidden), as an `Int32` clamped below at -1.
    @inlinable
    public func lastHiddenPosition(for position: Int32) -> Int32 {
        Int32(clamping: max(-1, Int(position) - recent))
    }
}
