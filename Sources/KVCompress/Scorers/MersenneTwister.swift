#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// `count` standard normal floats as PyTorch's CPU `torch.randn` (float32, contiguous, at least
    /// 16 elements) draws them: every uniform first (``nextUnitFloat()``), then Box-Muller on each
    /// block of 16, `u1 = 1 - x[j]`, `u2 = x[j + 8]`, `r = sqrt(-2 log u1)`, giving `r cos(2 pi u2)` and
    /// `r sin(2 pi u2)` for `j < 8`; a count that is not a multiple of 16 redraws 16 fresh uniforms for
    /// the last 16 elements. PyTorch's vectorized log, cos and sin differ from these by about one ulp.
    mutating func normals(count: Int) -> [Float] {
        precondition(count >= 16, "torch's block algorithm needs at least 16 elements")
        var x = (0..<count).map { _ in nextUnitFloat() }
        func boxMuller(_ i: Int) {
            for j in 0..<8 {
                let u1 = 1 - x[i + j], u2 = x[i + j + 8]
                let radius = (-2 * logf(u1)).squareRoot()
                let theta = 2 * Float.pi * u2
                x[i + j] = radius * cosf(theta)
                x[i + j + 8] = radius * sinf(theta)
            }
        }
        for i in stride(from: 0, to: count - 15, by: 16) { boxMuller(i) }
        if count % 16 != 0 {
            for j in (count - 16)..<count { x[j] = nextUnitFloat() }
            boxMuller(count - 16)
        }
        return x
    }
}
