import Foundation

/// RazorAttention's retrieval heads: the KV heads that keep the whole cache, in order of
/// importance, with the echo and induction scores they were chosen by (when known).
///
/// Selection (``init(echo:induction:echoRatio:inductionRatio:)``), as specified in the paper and
/// Huawei's golden-stick: the top `round(H x echoRatio)` heads by echo score and the top
/// `round(H x inductionRatio)` by induction score over all `H` (layer, KV head) pairs, a head
/// being a retrieval head if it is in either set (defaults 1 % and 14 %). The order interleaves
/// the two lists by relative rank (a head ranked `i` of `n` in a list comes at `i / n`), which is
/// the order a byte budget gives heads up in when it cannot hold them all.
///
/// File (``json``, `kvcompress calibrate razor` writes it): `retrieval_heads` in golden-stick's
/// form (`{"layer": [kv heads]}`), plus `order`, `echo_scores`, `induction_scores` and the ratios;
/// ``init(json:path:)`` also reads golden-stick's plain `{"layer": [kv heads]}` files (then the
/// order is layer by layer).
///
/// Paper: Tang et al., "RazorAttention: Efficient KV Cache Compression Through Retrieval Heads"
/// (ICLR 2025, arXiv 2407.15891). Reference: mindspore-ai/golden-stick
/// `mindspore_gs/experimental/long_context_compress/razor_attention/` (not its quirks: every echo
/// layer is merged, and the masks account for the BOS token).
public struct RazorHeads: Sendable, Equatable {
    /// Retrieval heads, most important first.
    public let heads: [KVHeadIndex]
    /// Echo scores (nil when read from a plain head list).
    public private(set) var echo: KVHeadScores?
    /// Induction scores (nil when read from a plain head list).
    public private(set) var induction: KVHeadScores?

    /// Selects retrieval heads from scores.
    /// - Throws: `KVError.invalidParameter` for a ratio outside `[0, 1]`; `.shapeMismatch` when the
    ///   two score tables differ in shape.
    public init(echo: KVHeadScores, induction: KVHeadScores, echoRatio: Double = 0.01,
                inductionRatio: Double = 0.14) throws(KVError) {
        for (name, r) in [("echoRatio", echoRatio), ("inductionRatio", inductionRatio)] where !(r >= 0 && r <= 1) {
            throw .invalidParameter(name: name, value: "\(r)", expected: "a fraction of all heads in [0, 1]")
        }
        guard echo.layers == induction.layers, echo.kvHeads == induction.kvHeads else {
            throw .shapeMismatch("echo scores are \(echo.layers) x \(echo.kvHeads), induction scores "
                + "\(induction.layers) x \(induction.kvHeads)")
        }
        let total = Double(echo.count)
        let lists = [(echo, Int((total * echoRatio).rounded())), (induction, Int((total * inductionRatio).rounded()))]
        var priority: [KVHeadIndex: Double] = [:]
        for (scores, n) in lists where n > 0 {
            for (i, h) in scores.ranking.prefix(n).enumerated() {
                let p = Double(i) / Double(n)
                let key = KVHeadIndex(layer: h.layer, head: h.head)
                priority[key] = min(priority[key] ?? .infinity, p)
            }
        }
        heads = priority.keys.sorted { a, b in priority[a]! != priority[b]! ? priority[a]! < priority[b]! : a < b }
        self.echo = echo
        self.induction = induction
    }

    /// A plain list of retrieval heads, most important first.
    /// - Throws: `KVError.invalidParameter` for a negative index or a head listed twice.
    public init(heads: [KVHeadIndex]) throws(KVError) {
        guard heads.allSatisfy({ $0.layer >= 0 && $0.head >= 0 }) else {
            throw .invalidParameter(name: "heads", value: "\(heads)", expected: "non-negative layer and head indices")
        }
        guard Set(heads).count == heads.count else {
            throw .invalidParameter(name: "heads", value: "\(heads)", expected: "each head listed once")
        }
        self.heads = heads
        echo = nil
        induction = nil
    }

    /// Checks that every head exists in `shape`.
    /// - Throws: `KVError.shapeMismatch` naming the first head out of range.
    public func check(_ shape: KVModelShape) throws(KVError) {
        for s in [echo, induction].compactMap({ $0 }) { try s.check(shape, what: "RazorAttention score table") }
        if let bad = heads.first(where: { $0.layer >= shape.layers || $0.head >= shape.kvHeads }) {
            throw .shapeMismatch("retrieval head \(bad) (layer.head) is outside the model's \(shape.layers) layers x "
                + "\(shape.kvHeads) KV heads: use the head list made for this model (kvcompress calibrate razor)")
        }
    }

    /// The head-list file's text.
    public var json: String {
        var byLayer: [Int: [Int]] = [:]
        for h in heads { byLayer[h.layer, default: []].append(h.head) }
        let map = byLayer.keys.sorted().map { "\"\($0)\": [\(byLayer[$0]!.sorted().map(String.init).joined(separator: ", "))]" }
        var lines = ["  \"retrieval_heads\": {" + map.joined(separator: ", ") + "}",
                     "  \"order\": [" + heads.map { "[\($0.layer), \($0.head)]" }.joined(separator: ", ") + "]"]
        for (name, s) in [("echo_scores", echo), ("induction_scores", induction)] {
            guard let s else { continue }
            let rows = s.values.map { "    [" + $0.map { "\($0)" }.joined(separator: ", ") + "]" }
            lines.append("  \"\(name)\": [\n" + rows.joined(separator: ",\n") + "\n  ]")
        }
        return "{\n" + lines.joined(separator: ",\n") + "\n}\n"
    }

    /// Reads a head list: this type's ``json``, or golden-stick's plain `{"layer": [kv heads]}`.
    /// - Throws: `KVError.malformedFile` for text that is neither.
    public init(json: String, path: String) throws(KVError) {
        guard let root = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
            throw .malformedFile(path: path, field: "(root)", offset: 0, reason: "not a JSON object")
        }
        func ints(_ any: Any?, _ field: String) throws(KVError) -> [Int] {
            guard let list = any as? [NSNumber], list.allSatisfy({ Int(exactly: $0.doubleValue) != nil }) else {
                throw .malformedFile(path: path, field: field, offset: 0, reason: "expected a list of integers")
            }
            return list.map { Int(exactly: $0.doubleValue)! }
        }
        if let order = root["order"] as? [Any] {
            var heads: [KVHeadIndex] = []
            for (i, pair) in order.enumerated() {
                let lh = try ints(pair, "order[\(i)]")
                guard lh.count == 2 else {
                    throw .malformedFile(path: path, field: "order[\(i)]", offset: 0, reason: "expected [layer, head]")
                }
                heads.append(KVHeadIndex(layer: lh[0], head: lh[1]))
            }
            func scores(_ field: String) throws(KVError) -> KVHeadScores? {
                guard let rows = root[field] else { return nil }
                guard let table = rows as? [[NSNumber]] else {
                    throw .malformedFile(path: path, field: field, offset: 0, reason: "expected rows of numbers, one per layer")
                }
                do { return try KVHeadScores(table.map { $0.map(\.floatValue) }) } catch {
                    throw .malformedFile(path: path, field: field, offset: 0, reason: error.description)
                }
            }
            do { self = try RazorHeads(heads: heads) } catch {
                throw .malformedFile(path: path, field: "order", offset: 0, reason: error.description)
            }
            echo = try scores("echo_scores")
            induction = try scores("induction_scores")
            return
        }
        let map = (root["retrieval_heads"] as? [String: Any]) ?? root
        var heads: [KVHeadIndex] = []
        for key in map.keys.sorted(by: { (Int($0) ?? -1) < (Int($1) ?? -1) }) {
            guard let layer = Int(key) else {
                throw .malformedFile(path: path, field: key, offset: 0, reason: "expected a layer index as the key")
            }
            heads += try ints(map[key], key).map { KVHeadIndex(layer: layer, head: $0) }
        }
        do { try self.init(heads: heads) } catch {
            throw .malformedFile(path: path, field: "retrieval_heads", offset: 0, reason: error.description)
        }
    }
}
