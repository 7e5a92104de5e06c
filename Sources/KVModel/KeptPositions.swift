import KVCompress
import KVCore

/// The kvpress parity procedure: exact mode, every prompt token prefilled in one pass, the policy
/// applied to each layer right after its attention, then the kept original positions read back.
public enum KeptPositions {
    /// Returns `kept[layer][kvHead]` = sorted original positions the policy kept.
    public static func compute(model: LlamaModel, promptTokens: [Int32],
                               policy: any KVCachePolicy) throws(KVError) -> [[[Int]]] {
        guard !promptTokens.isEmpty else { throw .emptyPrompt }
        let session = try LlamaSession(model: model, policy: policy, chunkSize: promptTokens.count)
        _ = try session.prefill(promptTokens)
        return (0..<model.config.layers).map { session.cache.keptPositions(layer: $0) }
    }
}
