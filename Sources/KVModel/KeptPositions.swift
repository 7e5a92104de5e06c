import KVCompress
import KVCore

/// The kvpress parity procedure: exact mode, every prompt token prefilled in one pass, the policy
/// applied to each layer right after its attention, then the kept original positions read back.
public enum KeptPositions {
    /// Returns `kept[layer][kvHead]` = sorted original positions the policy kept.
    /// - Parameter backend: where attention runs (default `.cpu`; `.cuda` to compare the GPU's
    ///   kept sets with the CPU's).
    public static func compute(model: LlamaModel, promptTokens: [Int32], policy: any KVCachePolicy,
                               backend: KVBackend = .cpu) throws(KVError) -> [[[Int]]] {
        guard !promptTokens.isEmpty else { throw .emptyPrompt }
        let session = try LlamaSession(model: model, policy: policy, chunkSize: promptTokens.count)
        try session.cache.setBackend(backend)
        _ = try session.prefill(promptTokens)
        return (0..<model.config.layers).map { session.cache.keptPositions(layer: $0) }
    }
}
