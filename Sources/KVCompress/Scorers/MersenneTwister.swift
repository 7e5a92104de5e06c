/// The 32-bit Mersenne Twister (MT19937) with the standard seeding: the generator behind PyTorch's
/// CPU `torch.Generator`, so that seeded random baselines draw the same numbers as kvpress's.
struct MersenneTwister {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// Seeds the state as `std::mt19937(seed)` and `torch.Generator().manual_seed(seed)` do.
    init(seed: UInt32) {
        state[0] = seed
        for i in 1..<624 { state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i) }
    }

    /// The next 32-bit output.
    mutating func next() -> UInt32 {
        if index >= 624 {
            for k in 0..<624 {
                let y = (state[k] & 0x8000_0000) | (state[(k + 1) % 624] & 0x7fff_ffff)
                state[k] = state[(k + 397) % 624] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0x9908_b0df)
            }
            index = 0
        }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// A uniform float in `[0, 1)` as PyTorch's CPU `torch.rand` (float32) makes it: the low 24
    /// bits of one output, times 2^-24.
    mutating func nextUnitFloat() -> Float {
        Float(next() & 0x00ff_ffff) * 0x1p-24
    }
}
