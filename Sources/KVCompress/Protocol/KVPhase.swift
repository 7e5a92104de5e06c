/// When a policy hook runs.
public enum KVPhase: Sendable, Equatable {
    /// After a layer's attention over a prompt chunk (one or more tokens appended at once).
    case prefill
    /// After a layer's attention for one generated token.
    case decode
    /// After a layer's attention over a chunk of a replay the policy asked for after a prompt
    /// (``KVCachePolicy/replays(afterPrompt:cache:state:)``): scoring passes such as KVzip's context
    /// reconstruction, whose entries leave the cache when the replay ends.
    case replay
}
