import Foundation

/// Picks tokens from logits according to ``SamplingParameters``; holds the seeded random state.
public struct Sampler: Sendable {
    /// The parameters in use.
    public let parameters: SamplingParameters
    private var state: (UInt64, UInt64, UInt64, UInt64)

    /// A sampler seeded from `parameters.seed` (xoshiro256** expanded from the seed by SplitMix64).
    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        var s = parameters.seed
        func splitMix() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    private mutating func nextUniform() -> Double {
        func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return Double(result >> 11) * 0x1.0p-53
    }

    /// The arg-max of `logits` (lowest id on ties).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for i in 0..<logits.count where logits[i] > bestValue {
            best = i
            bestValue = logits[i]
        }
        return Int32(best)
    }

    /// Chooses the next token.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        let p = parameters
        if p.temperature == 0 { return Self.argmax(logits) }
        // Candidates sorted by logit, descending, cut to top-k.
        var order = Array(0..<logits.count)
        if p.topK > 0 && p.topK < order.count {
            order = Array(order.lazy.sorted { logits[$0] > logits[$1] }.prefix(p.topK))
        } else {
            order.sort { logits[$0] > logits[$1] }
        }
        let maxLogit = Double(logits[order[0]])
        var weights = order.map { Foundation.exp((Double(logits[$0]) - maxLogit) / Double(p.temperature)) }
        let total = weights.reduce(0, +)
        // Nucleus cut.
        var kept = weights.count
        if p.topP < 1 {
            var cumulative = 0.0
            for i in 0..<weights.count {
                cumulative += weights[i] / total
                if cumulative >= Double(p.topP) { kept = i + 1; break }
            }
        }
        weights.removeSubrange(kept...)
        let keptTotal = weights.reduce(0, +)
        var r = nextUniform() * keptTotal
        for i in 0..<kept {
            r -= weights[i]
            if r < 0 { return Int32(order[i]) }
        }
        return Int32(order[kept - 1])
    }
}
