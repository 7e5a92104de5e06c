/// The per-sequence state of a policy or scorer that keeps none.
public struct KVNoState: Sendable {
    /// Creates the empty state.
    public init() {}
}
