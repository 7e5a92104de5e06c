extension KVCache {
    /// Overwrites the values of the rows `rows` of one head with f32 values given by the caller
    /// (converted to the cache's value type): what a policy that folds evicted values into kept
    /// ones uses (``KVRepresentation/mergeValues(similarityThreshold:mergeFraction:)``). Keys and
    /// positions are unchanged.
    /// - Parameters:
    ///   - values: `rows.count x headDim` floats, row after row.
    /// - Throws: `KVError.invalidParameter` for a layer, head or row range out of range or a count
    ///   that does not match (nothing is changed); `KVError.invalidState` when the head holds
    ///   KIVI-quantized entries (their values share quantization parameters: merge before they are
    ///   quantized, i.e. at the end of the prompt, or use a row format).
    public func setValues(layer: Int, head: Int, rows: Range<Int>, values: [Float]) throws(KVError) {
        let h = try checkedHead(layer, head)
        guard h.prunedCount == 0 else {
            throw .invalidState("layer \(layer) head \(head) holds \(h.prunedCount) ThinK-pruned entries: merge values before "
                + "pruning key channels (compose the merging policy first)")
        }
        guard h.packedCount == 0 else {
            throw .invalidState("layer \(layer) head \(head) holds \(h.packedCount) quantized entries (KIVI or ZipCache), whose values "
                + "cannot be rewritten one by one: merge values only in row formats or before the entries are quantized")
        }
        let s = h.rows
        guard rows.lowerBound >= 0 && rows.upperBound <= s.count else {
            throw .invalidParameter(name: "rows", value: "\(rows)", expected: "a range within layer \(layer) head \(head)'s rows 0..<\(s.count)")
        }
        guard values.count == rows.count * headDim else {
            throw .invalidParameter(name: "values.count", value: "\(values.count)",
                                    expected: "\(rows.count * headDim) for \(rows.count) rows of \(headDim) dims")
        }
        values.withUnsafeBufferPointer { v in
            for (i, r) in rows.enumerated() { s.setValue(r, from: v.baseAddress! + i * headDim, headDim: headDim) }
        }
    }
}
