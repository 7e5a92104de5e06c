import CKVKernels

/// Folding dropped values into kept ones before eviction (``KVRepresentation/mergeValues(similarityThreshold:mergeFraction:)``).
///
/// Per KV head, with kept rows `t` and dropped rows `e` (keys unit-normalized, norms clamped at
/// 1e-6, f32 as kvpress):
/// 1. each `e` picks the kept row `t(e)` whose key is most cosine-similar, `sim(e)`;
/// 2. it merges when `sim(e) >= similarityThreshold` and, with `mergeFraction < 1`, when `sim(e)`
///    is at least the `1 - mergeFraction` quantile (linear interpolation) of the similarities of
///    the entries above the threshold (kvpress takes the quantile over every dropped entry, the
///    failing ones as -inf, which yields NaN and no merge at all when the interpolation touches one);
/// 3. weight `w(e) = max(sim, 0) * ||v_e|| / (||v_e|| + ||v_t|| + 1e-6)`;
/// 4. every kept row that received a contribution becomes `(v_t + sum w(e) v_e) / (1 + sum w(e))`.
///
/// Reference: NVIDIA/kvpress `merging_press.py` (after Bolya et al., "Token Merging", ICLR 2023, and
/// Wan et al., "D2O", arXiv 2406.13035).
public enum KVValueMerging {
    /// Checks the merge parameters.
    /// - Throws: `KVError.invalidParameter` for a threshold above 1 (or not finite) or a fraction
    ///   outside `(0, 1]`.
    public static func validate(similarityThreshold: Float, mergeFraction: Double) throws(KVError) {
        guard similarityThreshold.isFinite, similarityThreshold <= 1 else {
            throw .invalidParameter(name: "similarityThreshold", value: "\(similarityThreshold)", expected: "a finite value <= 1")
        }
        guard mergeFraction > 0, mergeFraction <= 1 else {
            throw .invalidParameter(name: "mergeFraction", value: "\(mergeFraction)", expected: "a fraction in (0, 1]")
        }
    }

    /// Merges the values of the rows not in `keep` into the kept rows of every head of the context's
    /// layer (nil: nothing dropped in that head), writing the merged values into the cache. Eviction
    /// is the caller's next step.
    /// - Throws: `KVError.invalidState` when a head holds KIVI-quantized entries (see
    ///   ``KVCache/setValues(layer:head:rows:values:)``); `.invalidParameter` for an invalid
    ///   threshold or fraction or a kept row out of range.
    public static func merge(_ keep: [[Int]?], context: KVLayerContext, similarityThreshold: Float,
                             mergeFraction: Double) throws(KVError) {
        try validate(similarityThreshold: similarityThreshold, mergeFraction: mergeFraction)
        let d = context.shape.headDim, l = context.layer
        for (m, rows) in keep.enumerated() {
            guard let kept = rows, !kept.isEmpty else { continue }
            let n = context.count(head: m)
            guard kept.allSatisfy({ $0 >= 0 && $0 < n }) else {
                throw .invalidParameter(name: "kept rows of head \(m)", value: "\(kept.filter { $0 < 0 || $0 >= n }.prefix(4))",
                                        expected: "row indices in 0..<\(n)")
            }
            var isKept = [Bool](repeating: false, count: n)
            for j in kept { isKept[j] = true }
            let dropped = (0..<n).filter { !isKept[$0] }
            guard !dropped.isEmpty else { continue }
            let s = context.cache.head(l, m)
            func gather(_ list: [Int], keys: Bool) -> [Float] {
                var out = [Float](repeating: 0, count: list.count * d)
                out.withUnsafeMutableBufferPointer { o in
                    for (i, j) in list.enumerated() {
                        if keys { s.key(j, into: o.baseAddress! + i * d, headDim: d) } else { s.value(j, into: o.baseAddress! + i * d, headDim: d) }
                    }
                }
                return out
            }
            func norms(_ x: [Float], _ count: Int) -> [Float] {
                x.withUnsafeBufferPointer { b in (0..<count).map { kvk_dot_f32(b.baseAddress! + $0 * d, b.baseAddress! + $0 * d, d).squareRoot() } }
            }
            func normalized(_ x: [Float], _ count: Int) -> [Float] {
                let nrm = norms(x, count)
                return x.indices.map { x[$0] / max(nrm[$0 / d], 1e-6) }
            }
            let keptKeys = normalized(gather(kept, keys: true), kept.count)
            let droppedKeys = normalized(gather(dropped, keys: true), dropped.count)
            var keptValues = gather(kept, keys: false)
            let droppedValues = gather(dropped, keys: false)
            var similarity = [Float](repeating: 0, count: dropped.count * kept.count)
            kvk_matmul(KVK_F32, keptKeys, kept.count, d, droppedKeys, dropped.count, &similarity, kept.count)
            var best = [Float](repeating: -.infinity, count: dropped.count), target = [Int](repeating: 0, count: dropped.count)
            for e in dropped.indices {
                for t in kept.indices where similarity[e * kept.count + t] > best[e] {
                    best[e] = similarity[e * kept.count + t]
                    target[e] = t
                }
            }
            var merges = best.map { $0 >= similarityThreshold }
            if mergeFraction < 1 {
                let passing = dropped.indices.filter { merges[$0] }.map { best[$0] }.sorted()
                if !passing.isEmpty {
                    let position = (1 - mergeFraction) * Double(passing.count - 1)
                    let lo = Int(position), hi = min(lo + 1, passing.count - 1)
                    let cut = passing[lo] + (passing[hi] - passing[lo]) * Float(position - Double(lo))
                    for e in dropped.indices where merges[e] && best[e] < cut { merges[e] = false }
                }
            }
            let keptNorms = norms(keptValues, kept.count), droppedNorms = norms(droppedValues, dropped.count)
            var sum = [Float](repeating: 0, count: kept.count * d), weightSum = [Float](repeating: 0, count: kept.count)
            for e in dropped.indices where merges[e] {
                let t = target[e]
                let w = max(best[e], 0) * droppedNorms[e] / (droppedNorms[e] + keptNorms[t] + 1e-6)
                for i in 0..<d { sum[t * d + i] += w * droppedValues[e * d + i] }
                weightSum[t] += w
            }
            for (t, j) in kept.enumerated() where weightSum[t] > 0 {
                let divisor = 1 + weightSum[t]
                for i in 0..<d {
                    let merged: Float = keptValues[t * d + i] + sum[t * d + i]
                    keptValues[t * d + i] = merged / divisor
                }
                try context.cache.setValues(layer: l, head: m, rows: j..<(j + 1), values: Array(keptValues[(t * d)..<(t * d + d)]))
            }
        }
    }
}
