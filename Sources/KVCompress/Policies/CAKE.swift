import Foundation

/// CAKE: cascading, layer-adaptive eviction. Each layer's share of the total budget follows its
/// attention "preference" (spatial dispersion x temporal shift of the last `window` prompt
/// queries), decided layer by layer during prefill so that no layer holds more than its share once
/// its hook ran; within a layer, entries are ranked by the window attention's mean plus `gamma`
/// times its variance (attention that fluctuates across queries is kept too).
///
/// At the end of the first prompt, for layer `l` with window attention `A[h, r, j]` (the last
/// `window` queries, every query head, over the `L - window` entries before the window):
/// - dispersion `D_l = -sum A ln(A + 1e-10)` and shift `V_l = sum over heads and entries of the
///   unbiased variance over the window queries`; preference `P_l = D_l^(1/tau1) V_l^(1/tau2)`;
/// - indicator per KV head: `mean_r A + gamma var_r A`, average-pooled (kernel 5, zero padding,
///   divisor 5), then the mean over the head's query heads.
/// Cascading (the reference's `--cascading`): when layer `m` finishes, the total non-window budget
/// `B = (cacheSize - window) x layers` is shared over layers `0...m` in proportion to their
/// preferences (integers; each capped at `L - window`, the excess spread over the others), and every
/// layer `0...m` is cut to its share (plus the window) by its stored indicator, which is cut with it.
/// A layer's share only shrinks as later layers arrive, so the result equals one allocation over all
/// layers up to integer rounding. While decoding, a layer over `B_l + window` entries drops the
/// entry the current query attends to least (pooled, mean over the group), the window excepted.
///
/// Differences from the reference code: the statistics are computed in f32 (the reference casts the
/// probabilities back to fp16/bf16 first); a prompt is compressed when it is longer than
/// `cacheSize` (the reference: `cacheSize + window`).
///
/// Paper: Qin et al., "CAKE: Cascading and Adaptive KV Cache Eviction with Layer Preferences"
/// (ICLR 2025). Reference: antgroup/cakekv (`cake/cake_cache.py`, `cake/utils.py`,
/// `cake/model/modify_llama.py`).
public struct CAKE: KVCachePolicy {
    /// Average entries per head over the layers, window included: a ratio of the prompt, a fixed
    /// count, or bytes (what the evaluation's equal-memory axis gives).
    public let budget: KVBudget
    /// Recent prompt queries whose attention decides, always kept (default 32).
    public let window: Int
    /// Weight of the variance in the indicator (default 200).
    public let gamma: Float
    /// Temperature of the dispersion in the preference (default 1).
    public let tau1: Double
    /// Temperature of the shift in the preference (default 1).
    public let tau2: Double
    /// Average-pooling kernel of the indicator.
    public static let kernelSize = 5

    /// Per-sequence state.
    public struct State: Sendable {
        var queries: KVQueryWindow
        /// `preference[layer]` (nil until the layer's first prompt ended).
        public internal(set) var preference: [Double?]
        /// `indicator[layer][head]`: the indicator of the entries before the window, cut with them.
        var indicator: [[[Float]]]
        /// `budget[layer]`: entries kept per head besides the window (nil: not compressed).
        public internal(set) var budget: [Int?]
        /// The total non-window budget `(cacheSize - window) x layers` of the first prompt.
        public internal(set) var total: Int?
    }

    /// Creates the policy.
    /// - Throws: `KVError.invalidParameter` for an invalid budget, a window below 1, a negative
    ///   gamma or non-positive temperatures.
    public init(budget: KVBudget, window: Int = 32, gamma: Float = 200, tau1: Double = 1, tau2: Double = 1) throws(KVError) {
        self.budget = try budget.validated()
        guard window >= 1 else { throw .invalidParameter(name: "window", value: "\(window)", expected: ">= 1") }
        guard gamma >= 0 else { throw .invalidParameter(name: "gamma", value: "\(gamma)", expected: ">= 0") }
        for (name, t) in [("tau1", tau1), ("tau2", tau2)] where !(t > 0) {
            throw .invalidParameter(name: name, value: "\(t)", expected: "> 0")
        }
        self.window = window
        self.gamma = gamma
        self.tau1 = tau1
        self.tau2 = tau2
    }

    /// Empty buffers.
    public func makeState(shape: KVModelShape) -> State {
        State(queries: KVQueryWindow(size: window, shape: shape), preference: Array(repeating: nil, count: shape.layers),
              indicator: Array(repeating: [], count: shape.layers), budget: Array(repeating: nil, count: shape.layers),
              total: nil)
    }

    /// Decode-time eviction reads the step's attention column sums.
    public var needsAttentionColumnSums: Bool { true }

    /// Buffers the window; after the first prompt's last chunk, measures the layer and cascades.
    public func afterPrefill(_ context: KVLayerContext, state: inout State) throws(KVError) {
        let l = context.layer
        if context.isFirstChunk && l == 0 { state = makeState(shape: context.shape) }
        state.queries.record(context)
        guard context.isLastChunk, state.preference[l] == nil else {
            if context.isLastChunk { try evictForDecode(context, state: &state) }
            return
        }
        let length = context.counts.max() ?? 0
        let cacheSize = budget.keptCount(length: length, cache: context.cache)
        if state.total == nil { state.total = max(0, cacheSize - window) * context.shape.layers }
        guard length > cacheSize, length > window else {
            // Not compressed; while decoding the layer is held at its even share.
            state.preference[l] = 0
            state.budget[l] = max(0, budget.fixedCapacity(cache: context.cache) ?? length) - window
            return
        }
        measure(context, state: &state)
        // Cascade over the layers measured so far.
        let measured = (0...l).filter { state.preference[$0] != nil && !state.indicator[$0].isEmpty }
        let shares = Self.allocate(preferences: measured.map { state.preference[$0]! }, total: state.total!,
                                   cap: length - window)
        for (layer, share) in zip(measured, shares) {
            try cut(layer: layer, to: share, cache: context.cache, state: &state)
        }
    }

    /// While decoding: drops the least attended entry of a layer over its budget.
    public func afterDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        try evictForDecode(context, state: &state)
    }

    /// The window attention's preference and indicator of the context's layer.
    private func measure(_ context: KVLayerContext, state: inout State) {
        let l = context.layer
        let a = state.queries.attention(context)
        let (w, g) = (a.queryCount, context.shape.groupSize)
        var dispersion = 0.0, shift = 0.0
        var indicator: [[Float]] = []
        for m in 0..<context.shape.kvHeads {
            let n = context.count(head: m) - w   // entries before the window
            var pooledSum = [Float](repeating: 0, count: max(n, 0))
            for h in (m * g)..<((m + 1) * g) {
                var raw = [Float](repeating: 0, count: max(n, 0))
                for j in 0..<max(n, 0) {
                    var mean = 0.0, sq = 0.0
                    for r in 0..<w {
                        let p = Double(a[h, r, j])
                        mean += p
                        sq += p * p
                        dispersion -= p * log(p + 1e-10)
                    }
                    mean /= Double(w)
                    let variance = w > 1 ? max(0, (sq - Double(w) * mean * mean) / Double(w - 1)) : 0
                    shift += variance
                    raw[j] = Float(mean) + gamma * Float(variance)
                }
                let half = Self.kernelSize / 2
                for j in 0..<max(n, 0) {
                    var acc: Float = 0
                    for i in max(0, j - half)...min(n - 1, j + half) { acc += raw[i] }
                    pooledSum[j] += acc / Float(Self.kernelSize)
                }
            }
            indicator.append(pooledSum.map { $0 / Float(g) })
        }
        state.indicator[l] = indicator
        state.preference[l] = pow(max(dispersion, 0), 1 / tau1) * pow(max(shift, 0), 1 / tau2)
    }

    /// Cuts `layer` to `share` entries per head before its window, by its stored indicator.
    private func cut(layer l: Int, to share: Int, cache: KVCache, state: inout State) throws(KVError) {
        state.budget[l] = share
        for m in 0..<cache.kvHeads {
            let scores = state.indicator[l][m]
            let n = cache.count(layer: l, head: m)
            guard scores.count > share else { continue }
            let positions = Array(cache.positions(layer: l, head: m)[0..<scores.count])
            guard let kept = try KVSelection.topK(scores: scores, positions: positions, k: share) else { continue }
            try cache.retain(layer: l, head: m, indices: kept + Array(scores.count..<n))
            state.indicator[l][m] = kept.map { scores[$0] }
        }
    }

    /// Cuts each head of the context's layer over `budget + window` entries back, dropping the
    /// entries the step's queries attended to least (pooled), the window excepted.
    private func evictForDecode(_ context: KVLayerContext, state: inout State) throws(KVError) {
        guard let share = state.budget[context.layer], let sums = context.attentionColumnSums else { return }
        let half = Self.kernelSize / 2
        for m in 0..<context.shape.kvHeads {
            let n = context.count(head: m)
            let candidates = n - window
            guard candidates > share else { continue }
            let s = sums[m]
            let pooled = (0..<candidates).map { j in
                (max(0, j - half)...min(candidates - 1, j + half)).reduce(Float(0)) { $0 + s[$1] }
            }
            let positions = Array(context.positions(head: m)[0..<candidates])
            guard let kept = try KVSelection.topK(scores: pooled, positions: positions, k: share) else { continue }
            try context.cache.retain(layer: context.layer, head: m, indices: kept + Array(candidates..<n))
        }
    }

    /// Integer shares of `total` in proportion to `preferences` (truncated), each at most `cap`, the
    /// excess of capped layers spread over the others (integer division, the remainder to the first
    /// ones), then what truncation left given one entry at a time to the layers below the cap, in
    /// order, so that the shares sum to `min(total, cap x layers)`.
    public static func allocate(preferences: [Double], total: Int, cap: Int) -> [Int] {
        let n = preferences.count
        guard n > 0 else { return [] }
        let sum = preferences.reduce(0, +)
        var shares = preferences.map { sum > 0 ? Int(Double(total) * $0 / sum) : total / n }
        var capped = Array(repeating: false, count: n)
        while true {
            var excess = 0
            for i in 0..<n where shares[i] > cap {
                excess += shares[i] - cap
                shares[i] = cap
                capped[i] = true
            }
            let open = (0..<n).filter { !capped[$0] }
            guard excess > 0, !open.isEmpty else { break }
            for (k, i) in open.enumerated() { shares[i] += excess / open.count + (k < excess % open.count ? 1 : 0) }
        }
        var left = min(total, cap * n) - shares.reduce(0, +)
        while left > 0 {
            for i in 0..<n where left > 0 && shares[i] < cap {
                shares[i] += 1
                left -= 1
            }
        }
        return shares
    }

    /// `"CAKE"`.
    public var name: String { "CAKE" }
}
