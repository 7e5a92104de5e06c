import CKVKernels

extension KVCache {
    /// Re-positions one head's entries inside the cache: entry `j` moves from its stored position `s`
    /// to `newPositions[j]`, and its key (stored post-RoPE) is rotated by the RoPE delta
    /// `newPositions[j] - s` so it looks as if it had been rotated at the new position
    /// (kvpress `KeyRerotationPress`, StreamingLLM's in-cache positions).
    ///
    /// Values are unchanged. Quantized or half keys are dequantized, rotated in f32 and stored again.
    /// After re-positioning, the host must give new tokens positions from ``nextPosition(layer:)``
    /// instead of the original sequence position.
    ///
    /// - Parameters:
    ///   - layer: the layer.
    ///   - head: the KV head.
    ///   - newPositions: one per entry, strictly increasing, non-negative.
    ///   - inverseFrequencies: the host's RoPE inverse frequencies (`headDim / 2`).
    ///   - pairing: the host's RoPE pairing.
    /// - Precondition: counts match; `headDim` is even.
    public func reposition(layer: Int, head: Int, to newPositions: [Int32], inverseFrequencies: [Float],
                           pairing: RoPEPairing) {
        let s = self.head(layer, head)
        precondition(newPositions.count == s.count, "one new position per entry")
        precondition(inverseFrequencies.count == headDim / 2 && headDim % 2 == 0,
                     "headDim / 2 inverse frequencies")
        for j in 1..<max(newPositions.count, 1) {
            precondition(newPositions[j] > newPositions[j - 1], "new positions must increase")
        }
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: headDim)
        defer { buf.deallocate() }
        inverseFrequencies.withUnsafeBufferPointer { f in
            for j in 0..<s.count {
                var delta = newPositions[j] - s.positions[j]
                if delta != 0 {
                    s.key(j, into: buf, headDim: headDim)
                    kvk_rope(buf, 1, 1, headDim, headDim, &delta, f.baseAddress!, pairing.kernelValue)
                    s.setKey(j, from: buf, headDim: headDim)
                }
                s.setPosition(j, newPositions[j])
            }
        }
    }
}
