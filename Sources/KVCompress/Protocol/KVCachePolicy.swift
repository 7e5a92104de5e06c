/// A KV-cache compression policy: decides, after each layer's attention, which cache entries of each
/// KV head stay.
///
/// A policy is an immutable, `Sendable` value configured at init (initializers validate their
/// parameters and throw `KVError.invalidParameter`). Anything that changes while a sequence runs
/// (accumulated attention, buffered queries, per-head capacities) lives in its ``State``, created
/// once per sequence by ``makeState(shape:)`` and owned by the host's ``KVCompressor``.
///
/// Hooks:
/// - ``makeRoom(forTokens:cache:shape:state:)`` before each step's tokens are appended (rolling
///   policies with a fixed capacity evict here, so the cache never holds more than that capacity).
/// - ``afterPrefill(_:state:)`` after each layer's attention over a prompt chunk (the cache already
///   holds the chunk). Prompt-compressing policies act when ``KVLayerContext/isLastChunk`` is true.
/// - ``afterDecode(_:state:)`` after each layer's attention for one generated token.
/// - ``afterPrompt(cache:shape:state:pool:)`` once after the whole prompt (cross-layer decisions).
/// - ``replays(afterPrompt:cache:state:)`` and ``afterReplay(_:replay:state:)`` for policies that
///   score the prompt with extra passes through the model (KVzip's context reconstruction): the
///   host runs the replays after the prompt, before ``afterPrompt(cache:shape:state:pool:)``.
///
/// A hook evicts by calling ``KVCache/retain(layer:head:indices:)`` on ``KVLayerContext/cache``
/// for the context's layer only. Most policies are built from a ``KVScorer`` and a ``KVSelector``
/// through ``KVScoredPolicy``; see "Writing a custom policy" in the documentation.
public protocol KVCachePolicy: Sendable {
    /// Mutable per-sequence state (``KVNoState`` when the policy keeps none).
    associatedtype State = KVNoState

    /// Creates the state for a new sequence.
    func makeState(shape: KVModelShape) -> State

    /// Called once per step, before its `tokenCount` tokens are appended to any layer and before
    /// their positions are assigned (``KVCompressor/beginPrefill(tokenCount:endsPrompt:)`` and
    /// ``KVCompressor/beginDecode()`` call it). A rolling policy with a fixed capacity evicts here
    /// so that the step fits, and may re-position keys; the step's positions are then taken from
    /// the cache. Default: nothing.
    func makeRoom(forTokens tokenCount: Int, cache: KVCache, shape: KVModelShape, state: inout State) throws(KVError)

    /// Called after a layer's prefill attention over a chunk.
    func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError)

    /// Called after a layer's attention for one decoded token.
    func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError)

    /// Called once after the whole prompt went through every layer (``KVCompressor`` calls it after
    /// the last layer of the step that ends a prompt): the place for allocators that must see every layer
    /// before deciding (global budgets across layers). Default: nothing.
    func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout State, pool: ThreadPool?) throws(KVError)

    /// Token sequences the host should run through the model after a prompt, before the
    /// cross-layer hook (``KVReplay``; default: none). ``KVCompressor`` asks once per prompt, after
    /// its last chunk went through every layer, and defers
    /// ``afterPrompt(cache:shape:state:pool:)`` until the host ran them all.
    /// - Parameters:
    ///   - prompt: the positions of the prompt that just ended.
    func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout State) -> [KVReplay]

    /// Called after a layer's attention over a chunk of replay number `replay` (an index into what
    /// ``replays(afterPrompt:cache:state:)`` returned): the context's phase is ``KVPhase/replay``,
    /// its queries are the replay tokens', and the layer's cache holds the prompt and the replay's
    /// tokens so far (which leave it when the replay ends). The hook scores; it must not evict.
    /// Default: nothing.
    func afterReplay(_ context: KVLayerContext, replay: Int, state: inout State) throws(KVError)

    /// A short name for logs and benchmarks (default: the type name).
    var name: String { get }

    /// Whether the policy reads ``KVLayerContext/attentionColumnSums`` (default `false`). A host
    /// that sees `true` (through ``KVCompressor/needsAttentionColumnSums``) should let its prefill
    /// and decode attention produce the column sums (`Attention.prefill(...columnSums:...)`,
    /// `Attention.decode(...columnSums:...)`), which costs a few percent of the attention, instead
    /// of the policy probing the attention again, which costs about as much as the attention itself.
    var needsAttentionColumnSums: Bool { get }

    /// Λ-shaped prefill attention for the KV heads of `layer` (KVCore's `KVAttentionWindow`): nil
    /// (the default) when every head attends causally to every entry it holds, else one window or
    /// nil per KV head. ``KVCompressor`` passes them to `Attention.prefill`; decode attention reads
    /// every entry a head holds, so a policy with windows trims its heads to `sinks + recent - 1`
    /// entries after each step (DuoAttention's streaming heads).
    func attentionWindows(layer: Int, state: State) -> [KVAttentionWindow?]?
}

extension KVCachePolicy where State == KVNoState {
    /// Stateless policies need no per-sequence state.
    public func makeState(shape: KVModelShape) -> KVNoState { KVNoState() }
}

extension KVCachePolicy {
    /// Default: nothing before a step.
    public func makeRoom(forTokens tokenCount: Int, cache: KVCache, shape: KVModelShape, state: inout State) throws(KVError) {}

    /// Default: nothing after the prompt.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout State, pool: ThreadPool?) throws(KVError) {}

    /// Default: do nothing during decoding.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {}

    /// Default: no replays.
    public func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout State) -> [KVReplay] { [] }

    /// Default: nothing.
    public func afterReplay(_ context: KVLayerContext, replay: Int, state: inout State) throws(KVError) {}

    /// Default: the type name.
    public var name: String { String(describing: Self.self) }

    /// Default: `false` (the policy does not read attention column sums).
    public var needsAttentionColumnSums: Bool { false }

    /// Default: nil (causal attention over every entry).
    public func attentionWindows(layer: Int, state: State) -> [KVAttentionWindow?]? { nil }
}
