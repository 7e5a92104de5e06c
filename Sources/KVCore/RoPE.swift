import CKVKernels
import Foundation

/// Rotary position embedding (RoPE): the rotation a Llama-family model applies to its queries and
/// keys, so that a query at position `p` and a key at position `s` score `q . R(s - p) k`.
///
/// A host applies it to the queries and keys of each layer before attention (``apply(to:tokens:heads:tokenStride:positions:)``);
/// the cache re-rotates stored keys with it when it moves them to other positions.
///
/// Pair `i` of a head (see ``RoPEPairing``) is rotated by the angle `Float(position) * inverseFrequencies[i]`,
/// computed in f32 as Hugging Face transformers does.
///
/// ```swift
/// let rope = try RoPE(headDim: 64, base: 10_000, pairing: .neox)
/// rope.apply(to: q, tokens: n, heads: 9, positions: positions)   // [token][head][64] f32, in place
/// ```
public struct RoPE: Sendable, Equatable {
    /// `headDim / 2` inverse frequencies, one per rotated pair.
    public let inverseFrequencies: [Float]
    /// Which dimensions form a pair.
    public let pairing: RoPEPairing

    /// Dimension of the head vectors this rotation applies to.
    public var headDim: Int { inverseFrequencies.count * 2 }

    /// A rotation with the standard frequencies `base^(-2i / headDim)` for `i < headDim / 2`
    /// (rounded to f32 as Hugging Face transformers does).
    /// - Throws: `KVError.invalidParameter` for an odd or non-positive `headDim`, or a `base` that
    ///   is not finite and greater than 1.
    public init(headDim: Int, base: Float = 10_000, pairing: RoPEPairing) throws(KVError) {
        guard headDim >= 2, headDim % 2 == 0 else {
            throw .invalidParameter(name: "headDim", value: "\(headDim)", expected: "an even number >= 2")
        }
        guard base.isFinite, base > 1 else {
            throw .invalidParameter(name: "base", value: "\(base)", expected: "a finite RoPE base > 1 (10000 for Llama 2)")
        }
        let frequencies = (0..<(headDim / 2)).map { i in 1 / Foundation.powf(base, Float(2 * i) / Float(headDim)) }
        try self.init(inverseFrequencies: frequencies, pairing: pairing)
    }

    /// A rotation with given inverse frequencies (for scaled RoPE variants).
    /// - Throws: `KVError.invalidParameter` when `inverseFrequencies` is empty or holds a value
    ///   that is not finite.
    public init(inverseFrequencies: [Float], pairing: RoPEPairing) throws(KVError) {
        guard !inverseFrequencies.isEmpty else {
            throw .invalidParameter(name: "inverseFrequencies", value: "[]", expected: "headDim / 2 values")
        }
        if let bad = inverseFrequencies.first(where: { !$0.isFinite }) {
            throw .invalidParameter(name: "inverseFrequencies", value: "\(bad)", expected: "finite values")
        }
        self.inverseFrequencies = inverseFrequencies
        self.pairing = pairing
    }

    /// Rotates head vectors in place: token `t`, head `h` at `x + t * tokenStride + h * headDim`
    /// (f32), each token by its position.
    /// - Parameters:
    ///   - tokens: number of tokens.
    ///   - heads: heads per token.
    ///   - tokenStride: floats between consecutive tokens (default `heads * headDim`).
    ///   - positions: one position per token.
    /// - Precondition: `tokenStride >= heads * headDim`.
    /// - Complexity: O(tokens x heads x headDim).
    public func apply(to x: UnsafeMutablePointer<Float>, tokens: Int, heads: Int, tokenStride: Int? = nil,
                      positions: UnsafePointer<Int32>) {
        let stride = tokenStride ?? heads * headDim
        precondition(tokens >= 0 && heads >= 1 && stride >= heads * headDim, "RoPE: bad token count, heads or stride")
        guard tokens > 0 else { return }
        inverseFrequencies.withUnsafeBufferPointer { f in
            kvk_rope(x, tokens, heads, headDim, stride, positions, f.baseAddress!, pairing.kernelValue)
        }
    }

    /// Array form of ``apply(to:tokens:heads:tokenStride:positions:)``: `x` holds
    /// `positions.count x heads x headDim` floats.
    /// - Precondition: `x.count == positions.count * heads * headDim`.
    public func apply(to x: inout [Float], heads: Int, positions: [Int32]) {
        precondition(x.count == positions.count * heads * headDim, "RoPE: x must hold positions.count x heads x headDim floats")
        x.withUnsafeMutableBufferPointer { xb in
            positions.withUnsafeBufferPointer { p in
                guard let base = xb.baseAddress, let pos = p.baseAddress else { return }
                apply(to: base, tokens: positions.count, heads: heads, positions: pos)
            }
        }
    }

    /// Rotates `rows` vectors of `headDim` floats (consecutive) by the same position offset
    /// `delta`: a key rotated at position `s` becomes the key rotated at `s + delta`.
    package func rotate(_ x: UnsafeMutablePointer<Float>, rows: Int, by delta: Int32) {
        guard rows > 0 else { return }
        let deltas = [Int32](repeating: delta, count: rows)
        deltas.withUnsafeBufferPointer { apply(to: x, tokens: rows, heads: 1, positions: $0.baseAddress!) }
    }
}
