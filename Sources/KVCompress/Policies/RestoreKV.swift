/// RestoreKV: learned restoration on top of ``KVzip``. After KVzip's replays have scored the prompt,
/// a few learned restore embeddings (8 in the published artifacts) run once through the model with a
/// LoRA adapter active, attending to the whole prompt; their entries stay in the cache after it, at
/// the positions following the prompt, and carry what the evicted entries held. KVzip then evicts
/// its lowest-scoring prompt entries with the ratio raised by `restore tokens / prompt length`, so the
/// restore entries fill part of the same budget. The entries are really evicted (kvpress only masks
/// them).
///
/// The artifact is trained (by self-distillation from the full cache); published ones exist for
/// Llama-3.1-8B-Instruct and Qwen3-8B only: load one with ``RestoreKVArtifact/init(directory:layers:hidden:kvWidth:ffn:)``.
/// The host must run restore passes (``KVReplay/restore``; ``LlamaSession`` does).
///
/// Paper: RestoreKV (arXiv 2608.01247). Reference: NVIDIA/kvpress `restorekv_press.py`
/// (`RestoreKVPress`, a `KVzipPress` subclass).
public struct RestoreKV: KVCachePolicy {
    /// The replays, ranking and eviction.
    public let base: KVzip
    /// The restore embeddings and adapter.
    public let artifact: RestoreKVArtifact

    /// Creates the policy (KVzip's defaults: 4 sinks, chunks of 2048 tokens, one global ranking).
    /// - Parameter plusNormalization: KVzip+'s weighting (kvpress then loads the `_plus` artifact).
    /// - Throws: `KVError.invalidParameter` for an invalid budget, negative sinks or prefix, or a
    ///   chunk size below 1.
    public init(artifact: RestoreKVArtifact, budget: KVBudget, sinks: Int = 4, chunkSize: Int = 2048, prefixLength: Int = 0,
                layerwise: Bool = false, plusNormalization: Bool = false) throws(KVError) {
        base = try KVzip(budget: budget, sinks: sinks, chunkSize: chunkSize, prefixLength: prefixLength,
                         layerwise: layerwise, plusNormalization: plusNormalization)
        self.artifact = artifact
    }

    /// Fresh state: nothing scored.
    public func makeState(shape: KVModelShape) -> KVzip.State { base.makeState(shape: shape) }

    /// Nothing during a prompt: the replays after it score.
    public func afterPrefill(_ context: KVLayerContext, state: inout KVzip.State) throws(KVError) {}

    /// ``KVzip``'s replays, then the restore pass.
    public func replays(afterPrompt prompt: Range<Int>, cache: KVCache, state: inout KVzip.State) -> [KVReplay] {
        let replays = base.replays(afterPrompt: prompt, cache: cache, state: &state)
        return replays.isEmpty ? [] : replays + [KVReplay(restoring: artifact)]
    }

    /// KVzip's scoring (the restore pass scores nothing).
    /// - Throws: what ``KVzip/afterReplay(_:replay:state:)`` throws.
    public func afterReplay(_ context: KVLayerContext, replay: Int, state: inout KVzip.State) throws(KVError) {
        try base.afterReplay(context, replay: replay, state: &state)
    }

    /// Evicts KVzip's lowest prompt entries, the restore entries counted against the budget.
    public func afterPrompt(cache: KVCache, shape: KVModelShape, state: inout KVzip.State, pool: ThreadPool?) throws(KVError) {
        try base.evict(cache: cache, shape: shape, state: &state, reserved: artifact.tokenCount)
    }

    /// `"RestoreKV"`.
    public var name: String { "RestoreKV" }
}
