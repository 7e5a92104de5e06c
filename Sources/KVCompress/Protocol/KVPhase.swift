/// When a policy hook runs.
public enum KVPhase: Sendable, Equatable {
    /// After a layer's attention over a prompt chunk (one or more tokens appended at once).
    case prefill
    /// After a layer's attention for one generated token.
    case decode
}
