/// What a ``KVScoredPolicy`` does with the entries its selector does not keep.
///
/// Today entries are evicted; the enum is the extension point for representations that keep a
/// cheaper form of them (merged compensation entries, lower-precision blocks) without changing
/// scorers or selectors.
public enum KVRepresentation: Sendable, Equatable {
    /// Dropped entries are removed and their memory freed.
    case evict
}
