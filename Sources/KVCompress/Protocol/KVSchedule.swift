/// When a ``KVScoredPolicy`` evicts.
public enum KVSchedule: Sendable, Equatable {
    /// Once, after the last chunk of the sequence's first prompt in each layer (kvpress semantics:
    /// later prompts and generated tokens are not compressed); the cache grows freely afterwards.
    case prefill
    /// After the first prompt, then after every decode step and every later prompt whenever a
    /// head exceeds its capacity (the budget's fixed capacity, or what the first compression kept).
    case prefillAndDecode
}
