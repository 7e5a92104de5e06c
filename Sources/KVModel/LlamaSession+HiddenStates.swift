import CKVKernels
import KVCompress
import KVCore

extension LlamaSession {
    /// Prefills `tokens` as ``prefill(_:)`` does and returns the final hidden states (after the
    /// model's output norm, what the output matrix reads) of the token rows `rows`, in the order
    /// given: what distillation losses compare (`kvcompress calibrate duo`).
    /// - Throws: as ``prefill(_:)``; `KVError.invalidParameter` for a row outside `0..<tokens.count`.
    public func prefillHiddenStates(_ tokens: [Int32], rows: [Int]) throws(KVError) -> [[Float]] {
        if let bad = rows.first(where: { $0 < 0 || $0 >= tokens.count }) {
            throw .invalidParameter(name: "rows", value: "\(bad)", expected: "token rows in 0..<\(tokens.count)")
        }
        let hidden = model.config.hidden
        var states = Array(repeating: [Float](), count: rows.count)
        try prefillChunks(tokens) { (chunk: Range<Int>) throws(KVError) in
            for (i, r) in rows.enumerated() where chunk.contains(r) {
                states[i] = [Float](unsafeUninitializedCapacity: hidden) { out, n in
                    kvk_rmsnorm(scratch.x + (r - chunk.lowerBound) * hidden, model.outputNorm, out.baseAddress!, hidden,
                                model.config.rmsEps)
                    n = hidden
                }
            }
        }
        return states
    }
}
