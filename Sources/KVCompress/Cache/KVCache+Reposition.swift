extension KVCache {
    /// Re-positions one head's entries inside the cache: entry `j` moves from its stored position `s`
    /// to `newPositions[j]`, and its key (stored post-RoPE) is rotated by the RoPE offset
    /// `newPositions[j] - s`, so it is the key the host would have stored at the new position
    /// (kvpress `KeyRerotationPress`, StreamingLLM's in-cache positions).
    ///
    /// Values are unchanged. Keys stored in f16, bf16 or a block type are read as f32, rotated and
    /// stored again, which rounds them once more per move; entries that do not move are not touched.
    ///
    /// Afterwards the layer's ``nextPosition(layer:)`` is one past the largest position of its
    /// entries: new tokens continue right after the kept ones.
    ///
    /// - Parameters:
    ///   - layer: the layer.
    ///   - head: the KV head.
    ///   - newPositions: one per entry, strictly increasing, non-negative.
    ///   - rope: the host's RoPE (the one its keys were rotated with).
    /// - Throws: `KVError.invalidParameter` for a layer or head out of range, a position count that
    ///   is not the head's entry count, positions that are negative or not increasing, or a RoPE of
    ///   another head dimension (nothing is changed); `KVError.invalidState` when the head holds
    ///   KIVI-quantized entries.
    /// - Complexity: O(moved entries x headDim).
    public func reposition(layer: Int, head: Int, to newPositions: [Int32], rope: RoPE) throws(KVError) {
        let s = try rowHead(layer, head)
        guard newPositions.count == s.count else {
            throw .invalidParameter(name: "newPositions.count", value: "\(newPositions.count)",
                                    expected: "one per entry of layer \(layer) head \(head) (\(s.count))")
        }
        guard rope.headDim == headDim else {
            throw .invalidParameter(name: "rope.headDim", value: "\(rope.headDim)", expected: "the cache's headDim \(headDim)")
        }
        for j in newPositions.indices where newPositions[j] < 0 || (j > 0 && newPositions[j] <= newPositions[j - 1]) {
            throw .invalidParameter(name: "newPositions[\(j)]", value: "\(newPositions[j])",
                                    expected: "non-negative, strictly increasing positions")
        }
        moveKeys(s, to: newPositions, rope: rope)
        frontier[layer] = storage[layer].compactMap(\.lastPosition).max().map { Int($0) + 1 } ?? 0
    }

    /// Overwrites the keys and positions of the rows `rows` of one head with f32 keys given by the
    /// caller (converted to the cache's key type): what a policy that keeps exact copies of a few
    /// keys uses to move them without accumulating rounding (StreamingLLM's sinks). Values are
    /// unchanged. Afterwards the layer's ``nextPosition(layer:)`` is one past the largest position
    /// of its entries.
    /// - Parameters:
    ///   - keys: `rows.count x headDim` floats, row after row.
    ///   - positions: one per row, so that the head's positions stay strictly increasing.
    /// - Throws: `KVError.invalidParameter` for a layer, head or row range out of range, counts that
    ///   do not match, or positions that would not be strictly increasing and non-negative
    ///   (nothing is changed); `KVError.invalidState` when the head holds KIVI-quantized entries.
    public func setKeys(layer: Int, head: Int, rows: Range<Int>, keys: [Float], positions: [Int32]) throws(KVError) {
        let s = try rowHead(layer, head)
        guard rows.lowerBound >= 0 && rows.upperBound <= s.count else {
            throw .invalidParameter(name: "rows", value: "\(rows)", expected: "a range within layer \(layer) head \(head)'s rows 0..<\(s.count)")
        }
        guard keys.count == rows.count * headDim, positions.count == rows.count else {
            throw .invalidParameter(name: "keys.count / positions.count", value: "\(keys.count) / \(positions.count)",
                                    expected: "\(rows.count * headDim) / \(rows.count) for \(rows.count) rows")
        }
        var previous: Int32 = rows.lowerBound > 0 ? s.positions[rows.lowerBound - 1] : -1
        for (i, p) in positions.enumerated() {
            let next: Int32 = i + 1 < positions.count ? positions[i + 1]
                : (rows.upperBound < s.count ? s.positions[rows.upperBound] : Int32.max)
            guard p > previous, p < next || (i + 1 == positions.count && rows.upperBound == s.count) else {
                throw .invalidParameter(name: "positions[\(i)]", value: "\(p)",
                                        expected: "non-negative and strictly between its neighbours' positions")
            }
            previous = p
        }
        keys.withUnsafeBufferPointer { k in
            for (i, r) in rows.enumerated() {
                s.setKey(r, from: k.baseAddress! + i * headDim, headDim: headDim)
                s.setPosition(r, positions[i])
            }
        }
        frontier[layer] = storage[layer].compactMap(\.lastPosition).max().map { Int($0) + 1 } ?? 0
    }

    /// Moves every entry of `layer` to consecutive positions ("in-cache" positions): in each KV head
    /// holding `n` entries, entry `j` takes position `end - n + j`, with its key re-rotated (see
    /// ``reposition(layer:head:to:rope:)``), and the layer's next token takes `end`.
    ///
    /// With the default `end` (the layer's ``nextPosition(layer:)``) the newest entries keep their
    /// positions and only the older ones move up: after StreamingLLM evicts the oldest window entry,
    /// only the attention sinks move, by one position, and the query of the next token sees every
    /// kept key at the distance it would have at in-cache positions `0 ..< n` (RoPE attention
    /// depends only on position differences). Passing the largest head count as `end` moves the
    /// layer to positions starting at 0, which keeps positions below the model's context length on
    /// an endless stream.
    ///
    /// - Throws: `KVError.invalidParameter` for a layer out of range, an `end` smaller than a
    ///   head's entry count, or a RoPE of another head dimension; `KVError.invalidState` when a head
    ///   holds KIVI-quantized entries (nothing is changed).
    /// - Complexity: O(moved entries x headDim).
    public func compactPositions(layer: Int, endingAt end: Int? = nil, rope: RoPE) throws(KVError) {
        try checkLayer(layer)
        let end = end ?? frontier[layer]
        let longest = storage[layer].map(\.count).max() ?? 0
        guard end >= longest, end <= Int(Int32.max) else {
            throw .invalidParameter(name: "end", value: "\(end)",
                                    expected: "at least the layer's largest head count \(longest) and at most Int32.max")
        }
        guard rope.headDim == headDim else {
            throw .invalidParameter(name: "rope.headDim", value: "\(rope.headDim)", expected: "the cache's headDim \(headDim)")
        }
        let heads = try (0..<kvHeads).map { (m: Int) throws(KVError) in try rowHead(layer, m) }
        for s in heads {
            let n = s.count
            moveKeys(s, to: (0..<n).map { Int32(end - n + $0) }, rope: rope)
        }
        frontier[layer] = end
    }

    /// Rotates and re-labels one head's keys; runs of entries that move by the same offset are
    /// rotated together.
    /// The rows of a head that holds no quantized KIVI entries (all of its entries).
    /// - Throws: `KVError.invalidState` when it does: KIVI keys share per-channel parameters with
    ///   their group and cannot be rotated without quantizing them again.
    private func rowHead(_ layer: Int, _ head: Int) throws(KVError) -> KVHeadStorage {
        let s = try checkedHead(layer, head)
        guard s.packedCount == 0 else {
            throw .invalidState("layer \(layer) head \(head) holds \(s.packedCount) quantized entries (KIVI or ZipCache), whose keys "
                + "share per-channel parameters with their group and cannot be re-rotated without quantizing them "
                + "again: re-position keys only in row formats (for KIVI, use StreamingLLM without repositionKeys)")
        }
        guard s.prunedCount == 0 else {
            throw .invalidState("layer \(layer) head \(head) holds \(s.prunedCount) entries whose keys ThinK pruned to some "
                + "channels: RoPE rotates channel pairs, which a pruned key cannot take without its dropped channels")
        }
        return s.rows
    }

    private func moveKeys(_ s: KVHeadStorage, to newPositions: [Int32], rope: RoPE) {
        var buffer = [Float](repeating: 0, count: 64 * headDim)
        var j = 0
        while j < s.count {
            let delta = newPositions[j] - s.positions[j]
            var e = j + 1
            while e < s.count && e - j < 64 && newPositions[e] - s.positions[e] == delta { e += 1 }
            if delta != 0 {
                buffer.withUnsafeMutableBufferPointer { b in
                    let base = b.baseAddress!
                    for r in j..<e { s.key(r, into: base + (r - j) * headDim, headDim: headDim) }
                    rope.rotate(base, rows: e - j, by: delta)
                    for r in j..<e {
                        s.setKey(r, from: base + (r - j) * headDim, headDim: headDim)
                        s.setPosition(r, newPositions[r])
                    }
                }
            }
            j = e
        }
    }
}
