/// One score per (layer, KV head), the form in which retrieval-head methods rank heads
/// (DuoAttention's gates, RazorAttention's echo and induction scores): `values[layer][head]`.
public struct KVHeadScores: Sendable, Equatable {
    /// `values[layer][head]`.
    public let values: [[Float]]

    /// Creates scores.
    /// - Throws: `KVError.shapeMismatch` when there are no layers, layers differ in head count or
    ///   a score is not finite.
    public init(_ values: [[Float]]) throws(KVError) {
        guard let heads = values.first?.count, heads > 0, values.allSatisfy({ $0.count == heads }) else {
            throw .shapeMismatch("head scores need one row per layer with the same positive number of KV heads in each "
                + "(got rows of \(values.map(\.count)))")
        }
        guard values.allSatisfy({ $0.allSatisfy(\.isFinite) }) else {
            throw .shapeMismatch("head scores must be finite numbers")
        }
        self.values = values
    }

    /// Layers.
    public var layers: Int { values.count }
    /// KV heads per layer.
    public var kvHeads: Int { values[0].count }
    /// Every (layer, head) pair.
    public var count: Int { layers * kvHeads }

    /// Checks that the scores fit a model shape.
    /// - Throws: `KVError.shapeMismatch` naming both shapes.
    public func check(_ shape: KVModelShape, what: String) throws(KVError) {
        guard layers == shape.layers, kvHeads == shape.kvHeads else {
            throw .shapeMismatch("the \(what) has \(layers) layers x \(kvHeads) KV heads; the model has "
                + "\(shape.layers) x \(shape.kvHeads): use the pattern made for this model (kvcompress calibrate)")
        }
    }

    /// Every (layer, head), highest score first; equal scores in (layer, head) order.
    public var ranking: [(layer: Int, head: Int)] {
        let all = (0..<layers).flatMap { l in (0..<kvHeads).map { (layer: l, head: $0) } }
        return all.enumerated().sorted { a, b in
            let (x, y) = (values[a.element.layer][a.element.head], values[b.element.layer][b.element.head])
            return x != y ? x > y : a.offset < b.offset
        }.map(\.element)
    }

    /// The `count` highest-ranked heads as flags `[layer][head]`.
    public func top(_ count: Int) -> [[Bool]] {
        var flags = Array(repeating: Array(repeating: false, count: kvHeads), count: layers)
        for (l, m) in ranking.prefix(max(0, count)) { flags[l][m] = true }
        return flags
    }

    /// Tab-separated text: one line per layer, one value per KV head (DuoAttention's
    /// `full_attention_heads.tsv`).
    public var tsv: String {
        values.map { row in row.map { "\($0)" }.joined(separator: "\t") }.joined(separator: "\n") + "\n"
    }

    /// Reads tab-separated scores (``tsv``); blank lines and lines starting with `#` are skipped.
    /// - Throws: `KVError.malformedFile` naming the line and the byte offset of a value that is not
    ///   a number, or rows of different lengths.
    public static func parseTSV(_ text: String, path: String) throws(KVError) -> KVHeadScores {
        var rows: [[Float]] = []
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let offset = text.utf8.distance(from: text.startIndex, to: line.startIndex)
            let trimmed = line.trimmingSuffix { $0 == " " }
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            var row: [Float] = []
            for field in trimmed.split(separator: "\t") {
                guard let v = Float(field.trimmingSuffix { $0 == " " }), v.isFinite else {
                    throw .malformedFile(path: path, field: "line \(n + 1)", offset: offset,
                                         reason: "'\(field)' is not a number (expected tab-separated gate values, one per KV head)")
                }
                row.append(v)
            }
            rows.append(row)
        }
        do {
            return try KVHeadScores(rows)
        } catch {
            throw .malformedFile(path: path, field: "rows", offset: 0, reason: error.description)
        }
    }
}

extension Substring {
    /// The substring without trailing characters that match `drop`.
    func trimmingSuffix(while drop: (Character) -> Bool) -> Substring {
        var end = endIndex
        while end > startIndex, drop(self[index(before: end)]) { end = index(before: end) }
        return self[startIndex..<end]
    }
}
