/// Q-Filters: one direction per (layer, KV head) along which the attention a key will receive is
/// estimated, `score_j = -(f . k_j)` (kvpress's `QFilterPress` convention: `f` is minus the dominant
/// direction of the head's queries, so keys that align with the queries score high).
///
/// The paper computes each direction from the model's queries on a calibration text: the first
/// right singular vector of the head's (post-RoPE) queries, oriented so that the queries project
/// positively on it. `kvcompress calibrate qfilter` does that (``init(queryGrams:querySums:)`` from
/// the accumulated Gram matrices); kvpress downloads trained filters for some models instead.
///
/// Text file (``tsv``): a header line `# layers L kv_heads H head_dim D`, then one line per (layer,
/// KV head), layer-major, `D` tab-separated values.
///
/// Paper: Godey et al., "Q-Filters: Leveraging QK Geometry for Efficient KV Cache Compression"
/// (arXiv 2503.02812). Reference: NVIDIA/kvpress `qfilter_press.py`.
public struct QFilters: Sendable, Equatable {
    /// Layers.
    public let layers: Int
    /// KV heads per layer.
    public let kvHeads: Int
    /// Values per filter.
    public let headDim: Int
    /// `values[(layer * kvHeads + head) * headDim + i]`.
    public let values: [Float]

    /// Creates filters.
    /// - Throws: `KVError.shapeMismatch` unless `values.count == layers * kvHeads * headDim` (all
    ///   positive) and every value is finite.
    public init(layers: Int, kvHeads: Int, headDim: Int, values: [Float]) throws(KVError) {
        guard layers > 0, kvHeads > 0, headDim > 0, values.count == layers * kvHeads * headDim,
              values.allSatisfy(\.isFinite) else {
            throw .shapeMismatch("Q-filters need layers x kvHeads x headDim finite values; got \(values.count) for "
                + "\(layers) x \(kvHeads) x \(headDim)")
        }
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.values = values
    }

    /// The filters from per-head query statistics: `grams[l][m]` is `sum q q^T` (`headDim x headDim`,
    /// row-major, in double) over the queries of the head's group, `sums[l][m]` their sum; each filter
    /// is minus the Gram matrix's top eigenvector (the first right singular vector of the queries),
    /// oriented so that the queries' mean projects positively on the eigenvector.
    /// - Throws: `KVError.shapeMismatch` for tables of different shapes.
    public init(queryGrams grams: [[[Double]]], querySums sums: [[[Double]]]) throws(KVError) {
        guard let d = sums.first?.first?.count, grams.count == sums.count,
              zip(grams, sums).allSatisfy({ $0.count == $1.count && $0.allSatisfy { $0.count == d * d } && $1.allSatisfy { $0.count == d } })
        else { throw .shapeMismatch("query statistics must be layers x heads x (d x d) Gram matrices and d-vector sums") }
        var values: [Float] = []
        for (layerGrams, layerSums) in zip(grams, sums) {
            for (gram, sum) in zip(layerGrams, layerSums) {
                var u = Self.topEigenvector(gram, d: d)
                if zip(u, sum).reduce(0, { $0 + $1.0 * $1.1 }) < 0 { u = u.map { -$0 } }
                values += u.map { Float(-$0) }
            }
        }
        try self.init(layers: grams.count, kvHeads: grams[0].count, headDim: d, values: values)
    }

    /// The unit eigenvector of the largest eigenvalue of a symmetric positive semi-definite matrix
    /// (power iteration from the all-ones vector, 500 steps or until it settles).
    static func topEigenvector(_ a: [Double], d: Int) -> [Double] {
        var v = [Double](repeating: 1 / Double(d).squareRoot(), count: d)
        for _ in 0..<500 {
            var w = (0..<d).map { i in (0..<d).reduce(0) { $0 + a[i * d + $1] * v[$1] } }
            let norm = w.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0 else { return v }
            w = w.map { $0 / norm }
            let change = zip(w, v).reduce(0) { max($0, abs($1.0 - $1.1)) }
            v = w
            if change < 1e-12 { break }
        }
        return v
    }

    /// Head `head` of `layer`'s filter.
    public func filter(layer: Int, head: Int) -> ArraySlice<Float> {
        let o = (layer * kvHeads + head) * headDim
        return values[o..<(o + headDim)]
    }

    /// Checks that the filters fit a model shape.
    /// - Throws: `KVError.shapeMismatch` naming both shapes.
    public func check(_ shape: KVModelShape) throws(KVError) {
        guard layers == shape.layers, kvHeads == shape.kvHeads, headDim == shape.headDim else {
            throw .shapeMismatch("the Q-filters are \(layers) layers x \(kvHeads) KV heads x \(headDim); the model is "
                + "\(shape.layers) x \(shape.kvHeads) x \(shape.headDim): use filters made for this model (kvcompress calibrate qfilter)")
        }
    }

    /// The text form: the shape line, then one line per (layer, KV head).
    public var tsv: String {
        "# layers \(layers) kv_heads \(kvHeads) head_dim \(headDim)\n" + (0..<(layers * kvHeads)).map { r in
            values[(r * headDim)..<((r + 1) * headDim)].map { "\($0)" }.joined(separator: "\t")
        }.joined(separator: "\n") + "\n"
    }

    /// Reads the text form (``tsv``).
    /// - Throws: `KVError.malformedFile` for a missing or malformed shape line, a value that is not a
    ///   number, or a table of another shape than its header says.
    public init(tsv: String, path: String) throws(KVError) {
        let header = tsv.prefix { $0 != "\n" }.split(separator: " ")
        guard header.count == 7, header[0] == "#", header[1] == "layers", header[3] == "kv_heads", header[5] == "head_dim",
              let layers = Int(header[2]), let kvHeads = Int(header[4]), let d = Int(header[6]), layers > 0, kvHeads > 0 else {
            throw .malformedFile(path: path, field: "line 1", offset: 0,
                                 reason: "expected '# layers L kv_heads H head_dim D' (the file kvcompress calibrate qfilter writes)")
        }
        let table = try KVHeadScores.parseTSV(tsv, path: path)
        guard table.kvHeads == d else {
            throw .malformedFile(path: path, field: "values", offset: 0, reason: "\(table.kvHeads) values per line; the header says \(d)")
        }
        guard table.layers == layers * kvHeads else {
            throw .malformedFile(path: path, field: "lines", offset: 0,
                                 reason: "\(table.layers) lines; expected one per (layer, KV head): \(layers) x \(kvHeads)")
        }
        do {
            try self.init(layers: layers, kvHeads: kvHeads, headDim: table.kvHeads, values: table.values.flatMap { $0 })
        } catch {
            throw .malformedFile(path: path, field: "values", offset: 0, reason: error.description)
        }
    }
}
