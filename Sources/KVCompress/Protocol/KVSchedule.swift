/// When a ``KVScoredPolicy`` evicts.
public enum KVSchedule: Sendable, Equatable {
    /// Once, after the last prompt chunk of each layer (kvpress semantics); the cache grows freely
    /// while decoding.
    case prefill
    /// After the last prompt chunk, and after every decode step whenever a head exceeds its
    /// capacity (the budget's fixed capacity, or what the prefill compression kept).
    case prefillAndDecode
}
