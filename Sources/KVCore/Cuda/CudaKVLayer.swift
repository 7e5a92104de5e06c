import CKVCuda

/// One layer's cache entries on the GPU, and attention over them with the CUDA kernels: decode
/// (split-K over runs of 256 rows, merged by log-sum-exp), causal prefill (tiled, online softmax,
/// by original position), observed probabilities, attention column sums, and compaction on the
/// device for eviction.
///
/// Built from the same per-head parts the CPU attention reads (``KVHeadView``; a `KVCache` hands
/// them out per layer): each KV head's parts are copied as they are (f32, f16, bf16, q8_0, q4_0,
/// q4_1 or q2_1 rows, original positions, log counts of merged entries), so both backends attend
/// over identical entries. Parts the CUDA kernels do not read (KIVI key groups, ZipCache's
/// interleaved parts and channel scales, ThinK's pruned keys) are refused with
/// ``KVError/invalidParameter(name:value:expected:)``: run those caches on the CPU backend.
///
/// Results equal the CPU path's within float rounding (the kernels accumulate in f32 in another
/// order): the tests and `Scripts/gpu_check.sh` hold them to 1e-3 absolute on attention outputs.
/// A layer keeps scratch for one call at a time and grows in place (``append(head:rows:from:)``):
/// use it from one thread at a time, like the `KVCache` it mirrors.
public final class CudaKVLayer: @unchecked Sendable {
    /// KV heads.
    public let kvHeads: Int
    /// Elements per head vector.
    public let headDim: Int
    /// Query heads the decode scratch is sized for (a multiple of ``kvHeads``).
    public let queryHeads: Int
    /// Rows of each KV head (the sum over its parts).
    public private(set) var headRows: [Int]
    /// Device bytes of the entries: keys, values, positions and log counts.
    public var byteCount: Int {
        parts.reduce(0) { $0 + $1.count * ($1.keyRowBytes + $1.valueRowBytes + 4 + ($1.logCounts == nil ? 0 : 4)) }
    }
    /// The largest head dimension CUDA prefill, prefill column sums take (decode and observation
    /// take up to 256).
    public static let maxPrefillHeadDim = Int(KVCU_PMAXD)

    /// Where one part lives in ``storage``.
    struct Part: Sendable {
        var head: Int
        var count: Int
        var capacity: Int
        var firstRow: Int
        var keyType: ElementType
        var valueType: ElementType
        var keyRowBytes: Int
        var valueRowBytes: Int
        var keys = 0, values = 0, positions = 0, logCounts: Int?

        /// Gives the part room for `capacity` rows in a storage buffer whose first `size` bytes
        /// are taken (each array 256-byte aligned), and advances `size`.
        mutating func place(at size: inout Int, logCounts withLogCounts: Bool) {
            func next(_ bytes: Int) -> Int {
                defer { size += (bytes + 255) / 256 * 256 }
                return size
            }
            keys = next(capacity * keyRowBytes)
            values = next(capacity * valueRowBytes)
            positions = next(capacity * 4)
            logCounts = withLogCounts ? next(capacity * 4) : nil
        }
    }

    private(set) var parts: [Part]
    let storage: CudaBuffer
    let segments: CudaBuffer
    let segmentFirst: CudaBuffer
    let headRowsBuffer: CudaBuffer
    let items: CudaBuffer
    let itemFirst: CudaBuffer
    private(set) var itemCount = 0
    /// Whether the tables above trail ``parts`` (after an append).
    private var tablesStale = true
    let query: CudaBuffer
    let output: CudaBuffer
    let partials: CudaBuffer
    let scores: CudaBuffer
    let lse: CudaBuffer
    let sums: CudaBuffer

    /// Copies a layer's entries to the GPU.
    /// - Parameters:
    ///   - parts: `parts[m]` lists KV head `m`'s parts (its rows are their concatenation), as
    ///     `Attention.decode(query:heads:headDim:parts:...)` takes them.
    ///   - headDim: elements per head vector (a multiple of 8; at most 256 for decode, 128 for
    ///     prefill).
    ///   - queryHeads: query heads of the model (a multiple of the KV heads, at most 8 per KV head).
    ///   - reserve: rows of room after each part for ``append(head:rows:from:)`` (default 0).
    /// - Throws: ``KVError/backend(_:)`` without a GPU or on a device error;
    ///   ``KVError/invalidParameter(name:value:expected:)`` for parts or shapes the kernels do not take.
    public convenience init(parts: [[KVHeadView]], headDim: Int, queryHeads: Int, reserve: Int = 0) throws(KVError) {
        try Self.validate(kvHeads: parts.count, headDim: headDim, queryHeads: queryHeads)
        var layout: [Part] = []
        var size = 0
        for (m, head) in parts.enumerated() {
            var firstRow = 0
            for v in head {
                guard Self.readsRows(v) else {
                    throw .invalidParameter(name: "cache part for the CUDA backend", value: "KIVI groups, interleaved "
                                            + "rows, channel scales or pruned key channels",
                                            expected: "rows of f32, f16, bf16, q8_0, q4_0, q4_1 or q2_1; run this "
                                            + "cache on the CPU backend")
                }
                for type in [v.keyType, v.valueType] where headDim % type.blockSize != 0 {
                    throw .invalidParameter(name: "head dimension", value: "\(headDim)",
                                            expected: "a multiple of \(type.blockSize) for \(type) rows")
                }
                let capacity = v.count + max(0, reserve)
                var part = Part(head: m, count: v.count, capacity: capacity, firstRow: firstRow, keyType: v.keyType,
                                valueType: v.valueType, keyRowBytes: v.keyType.byteCount(elements: headDim),
                                valueRowBytes: v.valueType.byteCount(elements: headDim))
                part.place(at: &size, logCounts: v.logCounts != nil)
                layout.append(part)
                firstRow += v.count
            }
        }
        let storage = try CudaBuffer(byteCount: size)
        var index = 0
        for head in parts {
            for v in head {
                let part = layout[index]
                try Self.uploadRows(v.keys, stride: v.keyStride, rowBytes: part.keyRowBytes, count: v.count,
                                    to: storage, at: part.keys)
                try Self.uploadRows(v.values, stride: v.valueStride, rowBytes: part.valueRowBytes, count: v.count,
                                    to: storage, at: part.values)
                try storage.upload(UnsafeRawBufferPointer(start: v.positions, count: v.count * 4), at: part.positions)
                if let logCounts = v.logCounts, let offset = part.logCounts {
                    try storage.upload(UnsafeRawBufferPointer(start: logCounts, count: v.count * 4), at: offset)
                }
                index += 1
            }
        }
        try self.init(layout: layout, storage: storage, kvHeads: parts.count, headDim: headDim, queryHeads: queryHeads)
    }

    /// Builds the tables and scratch for `layout` in `storage`, sized for every part at its capacity.
    private init(layout: [Part], storage: CudaBuffer, kvHeads: Int, headDim: Int, queryHeads: Int) throws(KVError) {
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.queryHeads = queryHeads
        self.parts = layout
        self.storage = storage
        headRows = Self.rowsPerHead(layout, kvHeads: kvHeads, \.count)
        let chunk = Int(KVCU_CHUNK)
        let maxItems = max(1, layout.reduce(0) { $0 + ($1.capacity + chunk - 1) / chunk })
        let maxRows = max(1, Self.rowsPerHead(layout, kvHeads: kvHeads, \.capacity).max() ?? 0)
        segments = try CudaBuffer(byteCount: max(1, layout.count) * MemoryLayout<kvcu_segment>.stride)
        segmentFirst = try CudaBuffer(byteCount: (kvHeads + 1) * 4)
        headRowsBuffer = try CudaBuffer(byteCount: kvHeads * 4)
        items = try CudaBuffer(byteCount: maxItems * MemoryLayout<kvcu_item>.stride)
        itemFirst = try CudaBuffer(byteCount: (kvHeads + 1) * 4)
        let g = queryHeads / kvHeads
        query = try CudaBuffer(byteCount: queryHeads * headDim * 4)
        output = try CudaBuffer(byteCount: queryHeads * headDim * 4)
        partials = try CudaBuffer(byteCount: maxItems * g * (headDim + 2) * 4)
        scores = try CudaBuffer(byteCount: maxItems * g * chunk * 4)
        lse = try CudaBuffer(byteCount: queryHeads * 4)
        sums = try CudaBuffer(byteCount: kvHeads * maxRows * 4)
        try refreshTables()
    }

    private static func rowsPerHead(_ layout: [Part], kvHeads: Int, _ rows: KeyPath<Part, Int>) -> [Int] {
        var result = [Int](repeating: 0, count: kvHeads)
        for part in layout { result[part.head] += part[keyPath: rows] }
        return result
    }

    /// Uploads the segment, item and row tables for the parts' current counts.
    private func refreshTables() throws(KVError) {
        guard tablesStale else { return }
        let base = storage.address
        var firstRow = [Int](repeating: 0, count: kvHeads)
        let table = parts.map { part in
            defer { firstRow[part.head] += part.count }
            return kvcu_segment(keys: base + UInt64(part.keys), values: base + UInt64(part.values),
                                positions: base + UInt64(part.positions),
                                log_counts: part.logCounts.map { base + UInt64($0) } ?? 0, count: Int32(part.count),
                                key_type: Int32(part.keyType.rawValue), value_type: Int32(part.valueType.rawValue),
                                key_stride: Int32(part.keyRowBytes), value_stride: Int32(part.valueRowBytes),
                                head: Int32(part.head), first_row: Int32(firstRow[part.head]), reserved: 0)
        }
        var first = [Int32](repeating: Int32(parts.count), count: kvHeads + 1)
        for m in (0..<kvHeads).reversed() {
            first[m] = parts.firstIndex { $0.head >= m }.map(Int32.init) ?? first[m + 1]
        }
        var work: [kvcu_item] = []
        var itemFirst: [Int32] = []
        for m in 0..<kvHeads {
            itemFirst.append(Int32(work.count))
            for (s, part) in parts.enumerated() where part.head == m {
                for start in stride(from: 0, to: part.count, by: Int(KVCU_CHUNK)) {
                    work.append(kvcu_item(segment: Int32(s), start: Int32(start),
                                          end: Int32(min(part.count, start + Int(KVCU_CHUNK))), reserved: 0))
                }
            }
        }
        itemFirst.append(Int32(work.count))
        headRows = Self.rowsPerHead(parts, kvHeads: kvHeads, \.count)
        try segments.upload(table, at: 0)
        try segmentFirst.upload(first, at: 0)
        try headRowsBuffer.upload(headRows.map(Int32.init), at: 0)
        try items.upload(work, at: 0)
        try self.itemFirst.upload(itemFirst, at: 0)
        itemCount = work.count
        tablesStale = false
    }

    /// Appends rows `start ..< view.count` of `view` after KV head `m`'s last part, when they fit
    /// its reserved room and match its formats (the rows before `start` must be the ones already
    /// copied: a `KVCache` that only appended since). Returns false, changing nothing, when they
    /// do not fit or match (build a new layer then).
    /// - Throws: ``KVError/backend(_:)`` on a device error.
    public func append(head m: Int, rows view: KVHeadView, from start: Int) throws(KVError) -> Bool {
        guard let p = parts.lastIndex(where: { $0.head == m }) else { return false }
        let part = parts[p]
        guard start == part.count, view.count <= part.capacity, view.keyType == part.keyType,
              view.valueType == part.valueType, (view.logCounts == nil) == (part.logCounts == nil), Self.readsRows(view)
        else { return false }
        let n = view.count - start
        guard n > 0 else { return true }
        try Self.uploadRows(view.keys + start * view.keyStride, stride: view.keyStride, rowBytes: part.keyRowBytes,
                            count: n, to: storage, at: part.keys + start * part.keyRowBytes)
        try Self.uploadRows(view.values + start * view.valueStride, stride: view.valueStride,
                            rowBytes: part.valueRowBytes, count: n, to: storage, at: part.values + start * part.valueRowBytes)
        try storage.upload(UnsafeRawBufferPointer(start: view.positions + start, count: n * 4),
                           at: part.positions + start * 4)
        if let logCounts = view.logCounts, let offset = part.logCounts {
            try storage.upload(UnsafeRawBufferPointer(start: logCounts + start, count: n * 4), at: offset + start * 4)
        }
        parts[p].count = view.count
        tablesStale = true
        return true
    }

    /// Whether the kernels read `view`: plain rows (with positions and optional log counts), not KIVI
    /// groups, interleaved head rows, channel-scaled values or pruned key channels.
    private static func readsRows(_ view: KVHeadView) -> Bool {
        view.keyGroups == nil && view.headRows == nil && view.valueChannelScales == nil && view.keyChannels == nil
    }

    private static func validate(kvHeads: Int, headDim: Int, queryHeads: Int) throws(KVError) {
        guard kvHeads > 0, queryHeads >= kvHeads, queryHeads % kvHeads == 0,
              queryHeads / kvHeads <= Int(KVCU_MAXG) else {
            throw .invalidParameter(name: "query heads", value: "\(queryHeads) over \(kvHeads) KV heads",
                                    expected: "a multiple of the KV heads, at most \(KVCU_MAXG) per KV head")
        }
        guard headDim >= 8, headDim % 8 == 0, headDim <= Int(KVCU_MAXD) else {
            throw .invalidParameter(name: "head dimension", value: "\(headDim)",
                                    expected: "a multiple of 8 up to \(KVCU_MAXD) for the CUDA backend")
        }
    }

    private static func uploadRows(_ rows: UnsafeRawPointer, stride: Int, rowBytes: Int, count: Int,
                                   to storage: CudaBuffer, at offset: Int) throws(KVError) {
        guard count > 0 else { return }
        if stride == rowBytes {
            try storage.upload(UnsafeRawBufferPointer(start: rows, count: count * rowBytes), at: offset)
            return
        }
        let packed = UnsafeMutableRawBufferPointer.allocate(byteCount: count * rowBytes, alignment: 16)
        defer { packed.deallocate() }
        for j in 0..<count {
            (packed.baseAddress! + j * rowBytes).copyMemory(from: rows + j * stride, byteCount: rowBytes)
        }
        try storage.upload(UnsafeRawBufferPointer(packed), at: offset)
    }

    private var g: Int { queryHeads / kvHeads }
    private var maxRows: Int { max(1, headRows.max() ?? 0) }
    /// The most rows of one part (the kernels' grid over a part's rows).
    private var maxPartRows: Int { max(1, parts.map(\.count).max() ?? 0) }

    /// Decode attention of one query token over every row (what `Attention.decode` computes).
    /// - Parameters:
    ///   - query: `[queryHeads][headDim]` f32, post-RoPE.
    ///   - scale: softmax scale (default `1 / sqrt(headDim)`).
    ///   - output: `[queryHeads][headDim]` f32 (a head with no rows gets zeros).
    ///   - columnSums: nil, or KV head `m`'s row `j` at `columnSums + m * columnSumStride + j`: the
    ///     sum over the query heads of group `m` of their probability of row `j`.
    public func decode(query q: UnsafePointer<Float>, scale: Float? = nil, output out: UnsafeMutablePointer<Float>,
                       columnSums: UnsafeMutablePointer<Float>? = nil, columnSumStride: Int = 0) throws(KVError) {
        try refreshTables()
        precondition(columnSums == nil || columnSumStride >= (headRows.max() ?? 0), "column-sum stride too small")
        let floats = queryHeads * headDim
        try query.upload(UnsafeRawBufferPointer(start: q, count: floats * 4), at: 0)
        try enqueueDecode(scale: scale, columnSums: columnSums != nil)
        try output.download(into: UnsafeMutableRawBufferPointer(start: out, count: floats * 4), from: 0)
        if let columnSums { try downloadSums(sums, rowsPerHead: maxRows, to: columnSums, stride: columnSumStride) }
    }

    /// Queues decode attention of the query already in the layer's query buffer (for benchmarks:
    /// ``decode(query:scale:output:columnSums:columnSumStride:)`` without the copies).
    public func enqueueDecode(scale: Float? = nil, columnSums: Bool = false) throws(KVError) {
        try refreshTables()
        let scale = scale ?? Attention.defaultScale(headDim: headDim)
        try CudaDevice.check(kvcu_decode_attention(segments.address, items.address, Int32(itemCount), itemFirst.address,
                                                   Int32(kvHeads), query.address, Int32(g), Int32(headDim), scale,
                                                   partials.address, columnSums ? scores.address : 0, output.address,
                                                   lse.address, columnSums ? sums.address : 0, Int32(maxRows)))
    }

    /// Causal prefill attention of `queryCount` tokens over the layer's rows (what
    /// `Attention.prefill` computes): row `j` is visible to token `t` iff its position is at most
    /// `queryPositions[t]`.
    /// - Parameters:
    ///   - queries: token `t`, query head `h` at `queries + t * queryTokenStride + h * headDim`.
    ///   - output: token `t`, head `h` at `output + (t * queryHeads + h) * headDim`.
    ///   - columnSums: nil, or KV head `m`'s row `j` at `columnSums + m * columnSumStride + j`: the
    ///     sum over the tokens and the query heads of group `m` of their probability of row `j`.
    /// - Throws: ``KVError/invalidParameter(name:value:expected:)`` for a head dimension over 128.
    public func prefill(queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                        queryPositions: UnsafePointer<Int32>, scale: Float? = nil,
                        output: UnsafeMutablePointer<Float>, columnSums: UnsafeMutablePointer<Float>? = nil,
                        columnSumStride: Int = 0) throws(KVError) {
        guard headDim <= Int(KVCU_PMAXD) else {
            throw .invalidParameter(name: "head dimension", value: "\(headDim)",
                                    expected: "at most \(KVCU_PMAXD) for CUDA prefill")
        }
        try refreshTables()
        precondition(queryTokenStride >= queryHeads * headDim, "query token stride smaller than heads x headDim")
        precondition(columnSums == nil || columnSumStride >= (headRows.max() ?? 0), "column-sum stride too small")
        guard queryCount > 0 else { return }
        let scale = scale ?? Attention.defaultScale(headDim: headDim)
        let (queryBuffer, positions) = try upload(queries: queries, count: queryCount, tokenStride: queryTokenStride,
                                                  positions: queryPositions)
        let result = try CudaBuffer(byteCount: queryCount * queryHeads * headDim * 4)
        let lse = try CudaBuffer(byteCount: queryCount * queryHeads * 4)
        let sums = columnSums == nil ? nil : try CudaBuffer(byteCount: kvHeads * maxRows * 4)
        try CudaDevice.check(kvcu_prefill_attention(segments.address, Int32(parts.count), segmentFirst.address,
                                                    Int32(kvHeads), Int32(maxPartRows), queryBuffer.address,
                                                    Int32(queryCount), Int32(queryTokenStride), positions.address,
                                                    Int32(g), Int32(headDim), scale, result.address, lse.address,
                                                    sums?.address ?? 0, Int32(maxRows)))
        try result.download(into: UnsafeMutableRawBufferPointer(start: output, count: result.byteCount), from: 0)
        if let columnSums, let sums { try downloadSums(sums, rowsPerHead: maxRows, to: columnSums, stride: columnSumStride) }
    }

    /// Softmax probabilities of chosen queries over each head's rows, causal by position (what
    /// `Attention.observe` computes): query head `h`, query `t`, row `j` at
    /// `output + (h * queryCount + t) * outputKeyStride + j`.
    public func observe(queries: UnsafePointer<Float>, queryCount: Int, queryTokenStride: Int,
                        queryPositions: UnsafePointer<Int32>, scale: Float? = nil,
                        output: UnsafeMutablePointer<Float>, outputKeyStride: Int) throws(KVError) {
        try refreshTables()
        precondition(outputKeyStride >= (headRows.max() ?? 0), "output key stride smaller than a head's rows")
        guard queryCount > 0 else { return }
        let scale = scale ?? Attention.defaultScale(headDim: headDim)
        let (queryBuffer, positions) = try upload(queries: queries, count: queryCount, tokenStride: queryTokenStride,
                                                  positions: queryPositions)
        let result = try CudaBuffer(byteCount: queryHeads * queryCount * maxRows * 4)
        try CudaDevice.check(kvcu_observe(segments.address, Int32(parts.count), Int32(maxPartRows), headRowsBuffer.address,
                                          Int32(kvHeads), queryBuffer.address, Int32(queryCount),
                                          Int32(queryTokenStride), positions.address, Int32(g), Int32(headDim), scale,
                                          result.address, Int32(maxRows)))
        let host = UnsafeMutableBufferPointer<Float>.allocate(capacity: queryHeads * queryCount * maxRows)
        defer { host.deallocate() }
        try result.download(into: UnsafeMutableRawBufferPointer(host), from: 0)
        for h in 0..<queryHeads {
            let n = headRows[h / g]
            for t in 0..<queryCount {
                (output + (h * queryCount + t) * outputKeyStride)
                    .update(from: host.baseAddress! + (h * queryCount + t) * maxRows, count: n)
            }
        }
    }

    /// The layer after eviction, compacted on the device: KV head `m` keeps its rows `keep[m]`
    /// (ascending head-row indices; each part keeps its own representation).
    /// - Throws: ``KVError/invalidParameter(name:value:expected:)`` for rows out of range or not
    ///   ascending; ``KVError/backend(_:)`` on a device error.
    public func compacted(keeping keep: [[Int32]]) throws(KVError) -> CudaKVLayer {
        try refreshTables()
        guard keep.count == kvHeads else {
            throw .shapeMismatch("compaction lists \(keep.count) heads' rows for a layer of \(kvHeads) KV heads")
        }
        for (m, rows) in keep.enumerated() {
            for (i, r) in rows.enumerated() where r < 0 || Int(r) >= headRows[m] || (i > 0 && r <= rows[i - 1]) {
                throw .invalidParameter(name: "kept rows of KV head \(m)", value: "\(r) at index \(i)",
                                        expected: "ascending rows in 0..<\(headRows[m])")
            }
        }
        var layout: [Part] = []
        var local: [[Int32]] = []
        var size = 0
        var firstRow = [Int](repeating: 0, count: kvHeads)
        for old in parts {
            let rows = keep[old.head].filter { Int($0) >= old.firstRow && Int($0) < old.firstRow + old.count }
                .map { $0 - Int32(old.firstRow) }
            var part = old
            part.count = rows.count
            part.capacity = rows.count
            part.firstRow = firstRow[old.head]
            firstRow[old.head] += rows.count
            part.place(at: &size, logCounts: old.logCounts != nil)
            layout.append(part)
            local.append(rows)
        }
        let storage = try CudaBuffer(byteCount: size)
        let indices = try CudaBuffer(byteCount: max(1, local.map(\.count).max() ?? 0) * 4)
        for (old, (part, rows)) in zip(parts, zip(layout, local)) where !rows.isEmpty {
            try indices.upload(rows, at: 0)
            var copies = [(old.keys, part.keys, part.keyRowBytes), (old.values, part.values, part.valueRowBytes),
                          (old.positions, part.positions, 4)]
            if let from = old.logCounts, let to = part.logCounts { copies.append((from, to, 4)) }
            for (from, to, rowBytes) in copies {
                try CudaDevice.check(kvcu_gather_rows(self.storage.address + UInt64(from), Int64(rowBytes),
                                                      storage.address + UInt64(to), Int64(rowBytes), indices.address,
                                                      Int32(rows.count), Int32(rowBytes)))
            }
            try CudaDevice.check(kvcu_synchronize())  // the index buffer is reused by the next part
        }
        return try CudaKVLayer(layout: layout, storage: storage, kvHeads: kvHeads, headDim: headDim,
                               queryHeads: queryHeads)
    }

    /// Original positions of KV head `m`'s rows, read back from the device (tests and checks).
    public func positions(head m: Int) throws(KVError) -> [Int32] {
        try refreshTables()
        var result: [Int32] = []
        for part in parts where part.head == m && part.count > 0 {
            result += try storage.download(Int32.self, count: part.count, from: part.positions)
        }
        return result
    }

    /// Copies `count` query tokens (`tokenStride` floats apart) and their positions to the device.
    private func upload(queries: UnsafePointer<Float>, count: Int, tokenStride: Int,
                        positions: UnsafePointer<Int32>) throws(KVError) -> (CudaBuffer, CudaBuffer) {
        let queryBuffer = try CudaBuffer(byteCount: ((count - 1) * tokenStride + queryHeads * headDim) * 4)
        try queryBuffer.upload(UnsafeRawBufferPointer(start: queries, count: queryBuffer.byteCount), at: 0)
        let positionBuffer = try CudaBuffer(byteCount: count * 4)
        try positionBuffer.upload(UnsafeRawBufferPointer(start: positions, count: count * 4), at: 0)
        return (queryBuffer, positionBuffer)
    }

    private func downloadSums(_ buffer: CudaBuffer, rowsPerHead: Int, to columnSums: UnsafeMutablePointer<Float>,
                              stride: Int) throws(KVError) {
        for m in 0..<kvHeads where headRows[m] > 0 {
            try buffer.download(into: UnsafeMutableRawBufferPointer(start: columnSums + m * stride, count: headRows[m] * 4),
                                from: m * rowsPerHead * 4)
        }
    }
}
