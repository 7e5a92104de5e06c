/// A per-layer, per-KV-head **ragged** KV cache: each head of each layer holds its own rows of keys
/// and values with each row's original position, so heads and layers may keep different numbers of
/// tokens and evicting an entry really frees its memory.
///
/// Rows are stored in ascending position order. Keys are stored as the host produced them
/// (post-RoPE at their original positions by default). Formats (``KVEntryFormat``, chosen
/// separately for keys and values): rows of `f32` (exact), `f16` (default), `bf16`, the block types
/// `q8_0` / `q4_0` / `q4_1` / `q2_1` (head dimension a multiple of 32), KIVI (`kivi2`, `kivi4`),
/// whose heads hold a quantized part and a full-precision residual at once, or ZipCache
/// (`zipcache`), whose heads hold salient 4-bit and unimportant 2-bit entries and an f16 buffer
/// (attention reads every part in place and merges them exactly).
///
/// A host normally drives it through a ``KVCompressor``, which takes each step's positions from
/// ``nextPosition`` (the cache owns positions), appends the step's keys and values
/// (``append(layer:keys:values:positions:count:)``), runs attention over ``headParts(layer:)`` and
/// lets the policy evict (``retain(layer:head:indices:)``) and re-position keys.
///
/// Memory: ``byteCount`` is exact: every entry's key and value bytes (codes, scales and mins
/// included) and its position, KIVI's per-group parameters, plus ``metadataBytes``. After an eviction
/// leaves a head at half its capacity or less, its storage is reallocated to the kept rows plus a
/// small headroom, so ``allocatedByteCount`` drops too.
///
/// Not thread-safe: one cache belongs to one sequence; mutate it from one thread at a time.
public final class KVCache {
    /// Number of layers.
    public let layers: Int
    /// KV heads per layer.
    public let kvHeads: Int
    /// Dimension of one head vector.
    public let headDim: Int
    /// Element type of key rows (for KIVI keys: of the f16 residual).
    public let keyType: ElementType
    /// Element type of value rows (for KIVI values: of the f16 residual).
    public let valueType: ElementType
    /// How keys are stored.
    public let keyFormat: KVEntryFormat
    /// How values are stored.
    public let valueFormat: KVEntryFormat
    /// Entries a KIVI cache keeps in full precision at least (the residual `R`; 0 for row formats).
    public let residualLength: Int
    /// Consecutive entries that share KIVI key parameters (the group size `G`).
    public static let kiviGroupSize = 32
    /// The default ``residualLength`` of KIVI caches (KIVI's paper setting).
    public static let defaultResidualLength = 128
    /// How a ZipCache cache splits its entries (used when ``keyFormat`` is ``KVEntryFormat/zipCache``).
    public let zipCache: ZipCacheSettings

    let storage: [[KVHead]]
    /// Bytes held by every head (``byteCount`` without the metadata), kept up to date by every mutation.
    private var heldBytes = 0
    private var peakHeldBytes = 0
    /// `frontier[l]`: the position layer `l`'s next token takes (larger than every stored position).
    var frontier: [Int]
    /// Entries held by every head of every layer, kept up to date by every mutation.
    public private(set) var totalEntries = 0
    /// Where attention over this cache runs (`.cpu` or `.cuda`; set with ``setBackend(_:)``).
    public internal(set) var backend: KVBackend = .cpu
    /// With CUDA: per layer, the GPU copy of its rows and what it was copied from.
    var cudaMirrors: [KVCudaMirror?] = []
    /// With CUDA: how many times a layer was copied to the GPU whole (appends not counted).
    package internal(set) var cudaLayerCopies = 0

    /// Element types the attention kernels read from a cache's rows.
    public static let supportedTypes: [ElementType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q2_1]

    /// Bookkeeping bytes charged per (layer, KV head) in ``byteCount``.
    public static let metadataBytesPerHead = 64

    /// Creates an empty cache whose keys and values use one element type.
    /// - Throws: `KVError.invalidParameter` for a non-positive shape, a type outside
    ///   ``supportedTypes``, or a block type (`q8_0`, `q4_0`, `q4_1`) with `headDim` not a multiple of 32.
    public convenience init(layers: Int, kvHeads: Int, headDim: Int,
                            elementType: ElementType = .f16) throws(KVError) {
        try self.init(layers: layers, kvHeads: kvHeads, headDim: headDim, keyType: elementType,
                      valueType: elementType)
    }

    /// Creates an empty cache for a model shape.
    /// - Throws: `KVError.invalidParameter` as ``init(layers:kvHeads:headDim:elementType:)``.
    public convenience init(shape: KVModelShape, elementType: ElementType = .f16) throws(KVError) {
        try self.init(layers: shape.layers, kvHeads: shape.kvHeads, headDim: shape.headDim,
                      keyType: elementType, valueType: elementType)
    }

    /// Creates an empty cache with separate key and value element types.
    /// - Throws: `KVError.invalidParameter` as ``init(layers:kvHeads:headDim:elementType:)``.
    public convenience init(layers: Int, kvHeads: Int, headDim: Int, keyType: ElementType,
                            valueType: ElementType) throws(KVError) {
        for (name, t) in [("keyType", keyType), ("valueType", valueType)] where !Self.supportedTypes.contains(t) {
            throw .invalidParameter(name: name, value: "\(t)",
                                    expected: "one of " + Self.supportedTypes.map(\.description).joined(separator: ", "))
        }
        try self.init(layers: layers, kvHeads: kvHeads, headDim: headDim, keys: .rows(keyType), values: .rows(valueType))
    }

    /// Creates an empty cache with a storage format for keys and one for values.
    /// - Parameters:
    ///   - keys: how keys are stored (one of ``KVEntryFormat/supported``).
    ///   - values: how values are stored.
    ///   - residualLength: with a KIVI side, the entries kept in full precision at least (default
    ///     ``defaultResidualLength``); ignored otherwise.
    ///   - zipCache: with ZipCache, how entries are split (default: ZipCache's defaults).
    /// - Throws: `KVError.invalidParameter` for a non-positive shape, a format outside
    ///   ``KVEntryFormat/supported``, a block type, KIVI or ZipCache with `headDim` not a multiple of
    ///   32, ZipCache on one side only, ZipCache settings out of range, or a negative residual length.
    public init(layers: Int, kvHeads: Int, headDim: Int, keys: KVEntryFormat, values: KVEntryFormat,
                residualLength: Int = KVCache.defaultResidualLength,
                zipCache: ZipCacheSettings = ZipCacheSettings()) throws(KVError) {
        guard layers >= 1 else { throw .invalidParameter(name: "layers", value: "\(layers)", expected: ">= 1") }
        guard kvHeads >= 1 else { throw .invalidParameter(name: "kvHeads", value: "\(kvHeads)", expected: ">= 1") }
        guard headDim >= 1 else { throw .invalidParameter(name: "headDim", value: "\(headDim)", expected: ">= 1") }
        for (name, f) in [("keys", keys), ("values", values)] {
            guard KVEntryFormat.supported.contains(f) else {
                throw .invalidParameter(name: name, value: "\(f)", expected: "one of " + KVEntryFormat.supportedNames.joined(separator: ", "))
            }
            let block = f.isGrouped ? Self.kiviGroupSize : f.rowType.blockSize
            guard headDim % block == 0 else {
                throw .invalidParameter(name: name, value: "\(f)",
                                        expected: "a format whose block size (\(block)) divides headDim \(headDim)")
            }
        }
        guard (keys == .zipCache) == (values == .zipCache) else {
            throw .invalidParameter(name: keys == .zipCache ? "values" : "keys", value: "\(keys == .zipCache ? values : keys)",
                                    expected: "zipcache on both sides (ZipCache splits keys and values together: use --cache zipcache)")
        }
        if keys == .zipCache {
            guard (0...1).contains(zipCache.unimportantRatio) else {
                throw .invalidParameter(name: "unimportantRatio", value: "\(zipCache.unimportantRatio)", expected: "0 ... 1")
            }
            guard zipCache.streamingGap >= 1 else {
                throw .invalidParameter(name: "streamingGap", value: "\(zipCache.streamingGap)", expected: ">= 1")
            }
            guard zipCache.probeFraction > 0 && zipCache.probeFraction <= 1 else {
                throw .invalidParameter(name: "probeFraction", value: "\(zipCache.probeFraction)", expected: "in (0, 1]")
            }
        }
        let kivi = keys.isKIVI || values.isKIVI
        guard residualLength >= 0 else {
            throw .invalidParameter(name: "residualLength", value: "\(residualLength)", expected: ">= 0")
        }
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.keyFormat = keys
        self.valueFormat = values
        self.keyType = keys.rowType
        self.valueType = values.rowType
        self.residualLength = kivi ? residualLength : 0
        self.zipCache = zipCache
        storage = (0..<layers).map { _ in (0..<kvHeads).map { _ in KVHead(keys: keys, values: values, headDim: headDim) } }
        frontier = Array(repeating: 0, count: layers)
    }

    @inline(__always)
    func head(_ layer: Int, _ head: Int) -> KVHead {
        precondition(layer >= 0 && layer < layers, "layer \(layer) out of 0..<\(layers)")
        precondition(head >= 0 && head < kvHeads, "KV head \(head) out of 0..<\(kvHeads)")
        return storage[layer][head]
    }

    // MARK: - Appending

    /// Appends `count` tokens to every KV head of `layer`, converting from f32 to the storage types.
    ///
    /// - Parameters:
    ///   - layer: the layer.
    ///   - keys: f32, token `t`, KV head `m` at `keys + (t * kvHeads + m) * headDim` (what a forward
    ///     pass produces: post-RoPE keys, `[token][kvHead][headDim]`).
    ///   - values: same layout as `keys`.
    ///   - positions: the position of each token; strictly increasing, the first at least
    ///     ``nextPosition(layer:)`` (normally exactly that: see ``nextPosition``).
    ///   - count: tokens to append.
    /// - Throws: `KVError.invalidParameter` for a layer out of range, a negative count, or
    ///   positions that are not increasing from ``nextPosition(layer:)`` (nothing is appended).
    /// - Complexity: O(count x kvHeads x headDim), amortized.
    public func append(layer: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                       positions: UnsafePointer<Int32>, count: Int) throws(KVError) {
        try checkLayer(layer)
        guard count >= 0 else { throw .invalidParameter(name: "count", value: "\(count)", expected: ">= 0") }
        guard count > 0 else { return }
        var next = frontier[layer]
        for t in 0..<count {
            guard Int(positions[t]) >= next else {
                throw .invalidParameter(name: "positions[\(t)]", value: "\(positions[t])",
                                        expected: "strictly increasing positions from layer \(layer)'s next position \(frontier[layer]) "
                                            + "(take them from KVCache.nextPosition or KVCompressor's step)")
            }
            next = Int(positions[t]) + 1
        }
        frontier[layer] = next
        compactResidual(layer: layer)
        let tokenStride = kvHeads * headDim
        for m in 0..<kvHeads {
            let s = storage[layer][m].rows
            s.reserve(count)
            for t in 0..<count {
                let off = t * tokenStride + m * headDim
                s.append(key: keys + off, value: values + off, position: positions[t], headDim: headDim)
            }
            heldBytes += count * s.bytesPerEntry
        }
        totalEntries += count * kvHeads
        peakHeldBytes = max(peakHeldBytes, heldBytes)
    }

    /// Moves a KIVI cache's oldest full-precision entries of `layer` into its quantized part, a group
    /// of ``kiviGroupSize`` at a time, while a head's residual holds at least ``residualLength`` +
    /// ``kiviGroupSize`` entries; does nothing for row formats. ``append(layer:keys:values:positions:count:)``
    /// calls it before appending (so a step's own entries are attended in full precision) and
    /// ``KVCompressor`` after each layer's policy hook (so the bytes held after a prompt are the
    /// quantized ones). Already quantized entries are never quantized again.
    public func compactResidual(layer: Int) {
        precondition(layer >= 0 && layer < layers, "layer \(layer) out of 0..<\(layers)")
        guard keyFormat.isKIVI || valueFormat.isKIVI else { return }
        for s in storage[layer] where !s.packed.isEmpty {
            let before = s.byteCount
            s.compactResidual(residual: residualLength, group: Self.kiviGroupSize)
            heldBytes += s.byteCount - before
        }
    }

    /// ZipCache: quantizes the oldest `salient.count` buffered entries of one head (its head rows
    /// from `count - bufferedCount`) as one block, entry `r` at 4 bits when `salient[r]`, else at 2.
    /// ``KVCompressor`` calls it with ZipCache's saliency (``ZipCacheSettings``); a host with a
    /// saliency of its own may call it directly. Already quantized entries are never quantized again.
    /// - Throws: `KVError.invalidParameter` for a layer or head out of range or more entries than
    ///   the head buffers; `.invalidState` unless the cache is a ZipCache cache.
    public func quantizeBlock(layer: Int, head m: Int, salient: [Bool]) throws(KVError) {
        let s = try checkedHead(layer, m)
        guard keyFormat == .zipCache else {
            throw .invalidState("quantizeBlock needs a zipcache cache; this one stores \(keyFormat) keys")
        }
        guard salient.count <= s.rows.count else {
            throw .invalidParameter(name: "salient.count", value: "\(salient.count)",
                                    expected: "at most layer \(layer) head \(m)'s \(s.rows.count) buffered entries")
        }
        storeBlock(layer: layer, head: m, salient: salient)
    }

    /// ``quantizeBlock(layer:head:salient:)`` for callers that checked its requirements.
    func storeBlock(layer: Int, head m: Int, salient: [Bool]) {
        let s = head(layer, m)
        let before = s.byteCount
        s.quantizeBlock(salient: salient)
        heldBytes += s.byteCount - before
    }

    /// Entries of one head not yet quantized: a ZipCache head's f16 buffer (its last rows), a KIVI
    /// head's residual, every entry of a row-format head.
    public func bufferedCount(layer: Int, head m: Int) -> Int { head(layer, m).rows.count }

    /// Array convenience for ``append(layer:keys:values:positions:count:)``.
    /// - Throws: as ``append(layer:keys:values:positions:count:)``, and `KVError.shapeMismatch`
    ///   unless `keys.count == values.count == positions.count * kvHeads * headDim`.
    public func append(layer: Int, keys: [Float], values: [Float], positions: [Int32]) throws(KVError) {
        let n = positions.count
        guard keys.count == n * kvHeads * headDim && values.count == keys.count else {
            throw .shapeMismatch("\(keys.count) key and \(values.count) value floats for \(n) positions; expected "
                + "positions.count x kvHeads x headDim = \(n * kvHeads * headDim) each")
        }
        try keys.withUnsafeBufferPointer { (k: UnsafeBufferPointer<Float>) throws(KVError) in
            try values.withUnsafeBufferPointer { (v: UnsafeBufferPointer<Float>) throws(KVError) in
                try positions.withUnsafeBufferPointer { (p: UnsafeBufferPointer<Int32>) throws(KVError) in
                    guard n > 0 else { return }
                    try append(layer: layer, keys: k.baseAddress!, values: v.baseAddress!,
                               positions: p.baseAddress!, count: n)
                }
            }
        }
    }

    // MARK: - Views and queries

    /// The parts of every KV head of `layer`, for the `Attention` functions that take `parts:`:
    /// one KVCore `KVHeadView` per part (a KIVI head: its quantized entries, then its residual),
    /// whose concatenation is the head's rows.
    ///
    /// The views point into the cache's storage: they are valid only until the next mutation of
    /// this cache (append, retain, reposition, compactResidual, removeAll) and while the cache is alive.
    public func headParts(layer: Int) -> [[KVHeadView]] {
        precondition(layer >= 0 && layer < layers, "layer \(layer) out of 0..<\(layers)")
        return storage[layer].map { $0.views() }
    }

    /// Number of entries held by one KV head of one layer.
    public func count(layer: Int, head: Int) -> Int { self.head(layer, head).count }

    /// The original positions of one head's entries, ascending.
    public func positions(layer: Int, head: Int) -> [Int32] {
        let s = self.head(layer, head)
        return (0..<s.count).map { s.position($0) }
    }

    /// Kept positions of every KV head of `layer` (ascending), the form parity fixtures use.
    public func keptPositions(layer: Int) -> [[Int]] {
        (0..<kvHeads).map { m in positions(layer: layer, head: m).map { Int($0) } }
    }

    /// The position layer `layer`'s next token takes: one past the last position appended to it,
    /// or, after its keys were re-positioned, one past the largest position they moved to (0 for a
    /// new sequence). Evicting entries does not change it.
    public func nextPosition(layer: Int) -> Int {
        precondition(layer >= 0 && layer < layers, "layer \(layer) out of 0..<\(layers)")
        return frontier[layer]
    }

    /// The position the sequence's next token takes: the largest ``nextPosition(layer:)``.
    ///
    /// The cache is the one owner of positions: a host gives every new token the position the cache
    /// says comes next (``KVCompressor``'s steps do), which is the original sequence position unless
    /// a policy re-positioned keys (StreamingLLM with `repositionKeys`), and then the in-cache one.
    public var nextPosition: Int { frontier.max() ?? 0 }

    /// Bytes of one entry: a key row, a value row and an `Int32` position; for KIVI, an entry of the
    /// quantized part with its share of its group's parameters (rounded up), what long sequences
    /// approach (the residual's entries are f16 rows); for ZipCache, the mean of a salient and an
    /// unimportant entry weighted by ``ZipCacheSettings/unimportantRatio`` (rounded up; blocks'
    /// parameters not included).
    public var bytesPerEntry: Int {
        let s = storage[0][0]
        guard let packed = s.packed.first else { return s.rows.bytesPerEntry }
        if s.packed.count == 2 {
            let r = zipCache.unimportantRatio
            return Int((Double(packed.bytesPerRow) * (1 - r) + Double(s.packed[1].bytesPerRow) * r).rounded(.up))
        }
        let group = Self.kiviGroupSize
        let groupBytes = packed.keyBits == nil ? 0 : 4 * headDim + 4
        return packed.bytesPerRow + (groupBytes + group - 1) / group
    }

    /// The most entries one head can hold within `bytes` (what a byte budget per head allows): for
    /// row formats `bytes / bytesPerEntry`; for KIVI, the residual counted at its largest
    /// (``residualLength`` + ``kiviGroupSize`` - 1 f16 entries) and the rest at ``bytesPerEntry``;
    /// for ZipCache the same with a buffer of ``ZipCacheSettings/streamingGap`` - 1 entries.
    public func entryCount(forHeadBytes bytes: Int) -> Int {
        let s = storage[0][0]
        let rowBytes = s.rows.bytesPerEntry
        guard !s.packed.isEmpty else { return max(0, bytes) / rowBytes }
        let residual = s.packed.count == 2 ? zipCache.streamingGap - 1 : residualLength + Self.kiviGroupSize - 1
        if bytes <= residual * rowBytes { return max(0, bytes) / rowBytes }
        return residual + (bytes - residual * rowBytes) / bytesPerEntry
    }

    /// Fixed bookkeeping bytes: ``metadataBytesPerHead`` per (layer, KV head).
    public var metadataBytes: Int { layers * kvHeads * Self.metadataBytesPerHead }

    /// Exact bytes of the cached entries plus bookkeeping: every head's key and value bytes (codes,
    /// scales and mins included) and positions, KIVI's group parameters, and ``metadataBytes``; for
    /// row formats `totalEntries * bytesPerEntry + metadataBytes`.
    public var byteCount: Int { heldBytes + metadataBytes }

    /// The largest ``byteCount`` since the cache was created or ``resetPeakByteCount()`` was
    /// called (entries are counted right after each append, before any policy evicts).
    public var peakByteCount: Int { peakHeldBytes + metadataBytes }

    /// Starts measuring ``peakByteCount`` again from the current size.
    public func resetPeakByteCount() { peakHeldBytes = heldBytes }

    /// Bytes actually allocated for rows (capacity including growth headroom) plus bookkeeping.
    public var allocatedByteCount: Int {
        storage.reduce(0) { $0 + $1.reduce(0) { $0 + $1.allocatedBytes } } + metadataBytes
    }

    /// The key of one entry, converted to f32.
    public func key(layer: Int, head: Int, row: Int) -> [Float] {
        let s = self.head(layer, head)
        precondition(row >= 0 && row < s.count, "row \(row) out of 0..<\(s.count)")
        return [Float](unsafeUninitializedCapacity: headDim) { buf, n in
            s.key(row, into: buf.baseAddress!, headDim: headDim)
            n = headDim
        }
    }

    /// The value of one entry, converted to f32.
    public func value(layer: Int, head: Int, row: Int) -> [Float] {
        let s = self.head(layer, head)
        precondition(row >= 0 && row < s.count, "row \(row) out of 0..<\(s.count)")
        return [Float](unsafeUninitializedCapacity: headDim) { buf, n in
            s.value(row, into: buf.baseAddress!, headDim: headDim)
            n = headDim
        }
    }

    /// The keys and values of rows `rows` of one head, converted to f32, row after row (for a
    /// host's backward pass through its attention).
    package func rows(layer: Int, head: Int, _ rows: Range<Int>) -> (keys: [Float], values: [Float]) {
        let s = self.head(layer, head)
        return (s.keys(rows), s.values(rows))
    }

    // MARK: - Eviction

    /// Keeps only the given rows of one head (indices into its current rows, any order, no
    /// duplicates) and frees the others. Kept rows stay in ascending position order.
    /// - Throws: `KVError.invalidParameter` for a layer or head out of range, or an index out of
    ///   `0..<count(layer:head:)` or given twice (nothing is evicted).
    /// - Complexity: O(count x row bytes).
    public func retain(layer: Int, head: Int, indices: [Int]) throws(KVError) {
        let s = try checkedHead(layer, head)
        let sorted = indices.sorted()
        for (i, j) in sorted.enumerated() {
            guard j >= 0 && j < s.count else {
                throw .invalidParameter(name: "row index", value: "\(j)",
                                        expected: "an index into layer \(layer) head \(head)'s rows 0..<\(s.count)")
            }
            guard i == 0 || sorted[i - 1] != j else {
                throw .invalidParameter(name: "row index", value: "\(j)", expected: "each kept row listed once")
            }
        }
        if sorted.count == s.count { return }
        totalEntries -= s.count - sorted.count
        let before = s.byteCount
        s.retain(sortedIndices: sorted)
        heldBytes += s.byteCount - before
    }

    /// Evicts the contiguous rows `rows` of one head (e.g. the oldest non-sink entries of a rolling
    /// window).
    /// - Throws: `KVError.invalidParameter` for a layer or head out of range, or rows outside
    ///   `0..<count(layer:head:)`.
    /// - Complexity: O(min(rows before, rows after) x row bytes).
    public func remove(layer: Int, head: Int, rows: Range<Int>) throws(KVError) {
        let s = try checkedHead(layer, head)
        guard rows.lowerBound >= 0 && rows.upperBound <= s.count else {
            throw .invalidParameter(name: "rows", value: "\(rows)", expected: "a range within layer \(layer) head \(head)'s rows 0..<\(s.count)")
        }
        totalEntries -= rows.count
        let before = s.byteCount
        s.remove(rows)
        heldBytes += s.byteCount - before
    }

    /// Rolls the sequence back to `position`: removes every entry at `position` or later from every
    /// layer and head, and the next token takes `position` again (where a layer's next position was
    /// already at or below it, nothing changes). ``KVCompressor`` ends a policy's replay with it.
    /// - Throws: `KVError.invalidParameter` for a negative position.
    /// - Complexity: O(layers x kvHeads x entries).
    public func removeEntries(from position: Int) throws(KVError) {
        guard position >= 0 else {
            throw .invalidParameter(name: "position", value: "\(position)", expected: ">= 0")
        }
        for l in 0..<layers {
            for m in 0..<kvHeads {
                let p = positions(layer: l, head: m)
                let kept = p.firstIndex { Int($0) >= position } ?? p.count
                if kept < p.count { try remove(layer: l, head: m, rows: kept..<p.count) }
            }
            frontier[l] = min(frontier[l], position)
        }
    }

    /// Replaces the contiguous rows `rows` of one head (two or more) by one *merged entry* that
    /// stands for all their tokens: its key and value are the means of theirs (each row weighted by
    /// the tokens it already stands for), its position the last row's, and attention counts it once
    /// per token by adding the log of its token count to its logit (``logCount(layer:head:row:)``,
    /// KVCore's `KVHeadView.logCounts`). RazorAttention's compensation token is such an entry.
    ///
    /// A head that holds merged entries stores a 4-byte log-count per row from then on (counted in
    /// ``byteCount``).
    /// - Throws: `KVError.invalidParameter` for a layer or head out of range or rows not within
    ///   `0..<count(layer:head:)` or fewer than two; `.invalidState` for a KIVI cache (its
    ///   quantized part has no per-entry counts).
    public func merge(layer: Int, head: Int, rows: Range<Int>) throws(KVError) {
        let s = try checkedHead(layer, head)
        guard rows.lowerBound >= 0 && rows.upperBound <= s.count && rows.count >= 2 else {
            throw .invalidParameter(name: "rows", value: "\(rows)",
                                    expected: "two or more rows within layer \(layer) head \(head)'s rows 0..<\(s.count)")
        }
        guard s.packed.isEmpty else {
            throw .invalidState("a \(keyFormat.isGrouped ? keyFormat : valueFormat) cache cannot hold merged entries (its quantized "
                + "groups have no per-entry counts); use a row format (f32, f16, bf16, q8_0, q4_0, q4_1) with a merging policy")
        }
        guard rows.lowerBound >= s.leadingCount else {
            throw .invalidState("layer \(layer) head \(head)'s rows \(rows) include some of its \(s.leadingCount) quantized or "
                + "ThinK-pruned entries, which cannot be merged: merge before they are quantized or pruned")
        }
        totalEntries -= rows.count - 1
        let before = s.byteCount
        s.rows.merge((rows.lowerBound - s.leadingCount)..<(rows.upperBound - s.leadingCount), headDim: headDim)
        heldBytes += s.byteCount - before
        peakHeldBytes = max(peakHeldBytes, heldBytes)
    }

    /// ThinK: stores only the key `channels` of one head's oldest `rows` entries (their values stay
    /// whole), so those keys take `channels.count / headDim` of their bytes; attention multiplies
    /// the queries' kept channels with them, as if the other channels were 0. Entries appended later
    /// keep every channel. Once per head until ``removeAll()``.
    /// - Throws: `KVError.invalidParameter` for a layer or head out of range, channels not strictly
    ///   ascending within `0..<headDim` (or none, or a count the key type's block size does not
    ///   divide), or more rows than the head holds; `.invalidState` for a KIVI or ZipCache cache or a
    ///   head already pruned.
    public func pruneKeyChannels(layer: Int, head m: Int, keeping channels: [Int], rows n: Int) throws(KVError) {
        let s = try checkedHead(layer, m)
        guard !keyFormat.isGrouped && !valueFormat.isGrouped else {
            throw .invalidState("pruning key channels needs a row format; this cache stores \(keyFormat) keys and \(valueFormat) values")
        }
        guard s.pruned == nil else {
            throw .invalidState("layer \(layer) head \(m)'s keys are pruned already (once per head and sequence)")
        }
        guard !channels.isEmpty, channels.first! >= 0, channels.last! < headDim,
              zip(channels, channels.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw .invalidParameter(name: "channels", value: "\(channels.count) channels",
                                    expected: "one or more strictly ascending channels in 0..<\(headDim)")
        }
        guard channels.count % keyType.blockSize == 0 else {
            throw .invalidParameter(name: "channels", value: "\(channels.count) channels",
                                    expected: "a multiple of the \(keyType) block size \(keyType.blockSize)")
        }
        guard n >= 0 && n <= s.rows.count else {
            throw .invalidParameter(name: "rows", value: "\(n)", expected: "0...\(s.rows.count), the head's entries")
        }
        let before = s.byteCount
        s.pruneKeys(keeping: channels, rows: n)
        heldBytes += s.byteCount - before
    }

    /// The natural log of the number of tokens an entry stands for: 0 for an ordinary entry, `ln c`
    /// for an entry merged from `c` tokens (``merge(layer:head:rows:)``).
    public func logCount(layer: Int, head: Int, row: Int) -> Float {
        let s = self.head(layer, head)
        precondition(row >= 0 && row < s.count, "row \(row) out of 0..<\(s.count)")
        return row < s.leadingCount ? 0 : s.rows.logCount(row - s.leadingCount)
    }

    /// Drops every entry of every layer (a new sequence: positions start again at 0), returning
    /// the memory.
    public func removeAll() {
        for layer in storage { for s in layer { s.removeAll() } }
        frontier = Array(repeating: 0, count: layers)
        totalEntries = 0
        heldBytes = 0
    }

    func checkLayer(_ layer: Int) throws(KVError) {
        guard layer >= 0 && layer < layers else {
            throw .invalidParameter(name: "layer", value: "\(layer)", expected: "0..<\(layers)")
        }
    }

    func checkedHead(_ layer: Int, _ head: Int) throws(KVError) -> KVHead {
        try checkLayer(layer)
        guard head >= 0 && head < kvHeads else {
            throw .invalidParameter(name: "head", value: "\(head)", expected: "a KV head in 0..<\(kvHeads)")
        }
        return storage[layer][head]
    }
}
