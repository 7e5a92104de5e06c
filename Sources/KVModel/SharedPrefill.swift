import KVCompress
import KVCore

/// What ``LlamaSession/prefill(_:sharingWith:)`` returns.
public struct SharedPrefill: Sendable {
    /// Logits of the last prompt token (the same for the leading session and every follower: the
    /// prompt's pass attends over the whole prompt in every layer).
    public let logits: [Float]
    /// The last prompt token's post-RoPE queries, per layer (`heads x headDim` floats each), to
    /// compare attention over a follower's compressed cache with attention over the full one.
    public let lastQueries: [[Float]]
}

/// The followers of one shared prompt pass: their compressors, their steps, and what the pass
/// records for them.
final class SharedPass {
    let followers: [KVCompressor]
    var steps: [KVStep] = []
    var lastQueries: [[Float]]
    private let shape: KVModelShape

    init(followers: [KVCompressor], shape: KVModelShape) {
        self.followers = followers
        self.shape = shape
        lastQueries = Array(repeating: [], count: shape.layers)
    }

    /// Begins the followers' steps: the same tokens at the same positions as the lead's step.
    func begin(_ lead: KVStep) throws(KVError) {
        steps = []
        for f in followers {
            let step = try f.beginPrefill(tokenCount: lead.tokenCount, endsPrompt: lead.isLastChunk)
            guard step.positions == lead.positions else {
                throw .invalidState("a follower's positions \(step.positions.first ?? 0)... differ from the leading "
                    + "session's \(lead.positions.first ?? 0)...: followers must be fresh sessions")
            }
            steps.append(step)
        }
    }

    /// One layer: appends to the lead and every follower, runs attention over the lead's cache (with
    /// the column sums any of them needs and the lead's prefill windows: followers with windows of
    /// their own see the lead's attention, as every follower does), then the lead's and every follower's policy hook.
    func attend(layer l: Int, lead: KVCompressor, step: KVStep, queries: UnsafePointer<Float>,
                preRoPEQueries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                output: UnsafeMutablePointer<Float>, attentionInputs: KVAttentionInputs) throws(KVError) {
        try lead.append(layer: l, step: step, keys: keys, values: values)
        for (f, s) in zip(followers, steps) { try f.append(layer: l, step: s, keys: keys, values: values) }
        let parts = lead.cache.headParts(layer: l)
        let counts = parts.map { $0.reduce(0) { $0 + $1.count } }
        let stride = counts.max() ?? 0
        let needSums = lead.needsAttentionColumnSums || followers.contains { $0.needsAttentionColumnSums }
        var flat = [Float](repeating: 0, count: needSums ? max(counts.count * stride, 1) : 0)
        let n = step.tokenCount
        let width = shape.heads * shape.headDim
        flat.withUnsafeMutableBufferPointer { f in
            let sums = needSums ? f.baseAddress : nil
            step.positions.withUnsafeBufferPointer { p in
                Attention.prefill(queries: queries, queryCount: n, queryTokenStride: width, queryPositions: p.baseAddress!,
                                  heads: shape.heads, headDim: shape.headDim, parts: parts, output: output,
                                  columnSums: sums, columnSumStride: stride, windows: lead.attentionWindows(layer: l),
                                  pool: lead.pool)
            }
        }
        let sums: [[Float]]? = needSums
            ? counts.indices.map { m in Array(flat[(m * stride)..<(m * stride + counts[m])]) } : nil
        try lead.afterAttention(layer: l, step: step, queries: queries, preRoPEQueries: preRoPEQueries,
                                attentionColumnSums: lead.needsAttentionColumnSums ? sums : nil, attentionInputs: attentionInputs)
        for (f, s) in zip(followers, steps) {
            try f.afterAttention(layer: l, step: s, queries: queries, preRoPEQueries: preRoPEQueries,
                                 attentionColumnSums: f.needsAttentionColumnSums ? sums : nil, attentionInputs: attentionInputs)
        }
        lastQueries[l] = Array(UnsafeBufferPointer(start: queries + (n - 1) * width, count: width))
    }
}

extension LlamaSession {
    /// Prefills `tokens` in one step of this session and of every follower: one forward pass (this
    /// session's), whose every layer's keys, values, queries and attention column sums also go to
    /// each follower's compressor, which runs its own policy on its own copy of the layer. This is
    /// the kvpress evaluation procedure (every prompt token prefilled in one pass, each layer
    /// compressed right after its attention) for many policies at the cost of one prefill: the
    /// prompt's pass attends over the whole prompt in every layer whatever the policies, so each
    /// follower ends with exactly the cache it would have after prefilling the prompt alone, and
    /// continues (decodes) on its own.
    ///
    /// - Parameters:
    ///   - tokens: the prompt, at most ``chunkSize`` tokens (one step).
    ///   - followers: fresh sessions on the same model (nothing processed yet).
    /// - Throws: `KVError.invalidParameter` for an empty or too long prompt, an id outside the
    ///   vocabulary or a follower on another model or already used; whatever a policy throws.
    public func prefill(_ tokens: [Int32], sharingWith followers: [LlamaSession]) throws(KVError) -> SharedPrefill {
        guard !tokens.isEmpty else { throw .emptyPrompt }
        guard tokens.count <= chunkSize else {
            throw .invalidParameter(name: "tokens.count", value: "\(tokens.count)",
                                    expected: "at most the session's chunk size \(chunkSize) (a shared prefill is one step)")
        }
        for f in followers where f.model !== model || f.processedTokens > 0 || f === self {
            throw .invalidParameter(name: "followers", value: "a session on another model, already used, or this one",
                                    expected: "fresh sessions on the same model")
        }
        let shared = SharedPass(followers: followers.map(\.compressor), shape: model.shape)
        try tokens.withUnsafeBufferPointer { (all: UnsafeBufferPointer<Int32>) throws(KVError) in
            try forward(all, decode: false, endsPrompt: true, shared: shared)
        }
        let logits = lastLogits(tokenCount: tokens.count)
        for session in [self] + followers { try session.runReplays(prompt: tokens) }
        return SharedPrefill(logits: logits, lastQueries: shared.lastQueries)
    }
}
