/// CUR (CurDKV) leverage scores: entries whose key and value carry much of the head's energy are
/// kept. Needs no queries or attention.
///
/// Per head, with `k2_j = ||k_j||^2` and `v2_j = ||v_j||^2` over the cached (post-RoPE) keys and the
/// values: with the local approximation each is divided by its sum over its window of
/// `localWindow` consecutive rows (windows start at row 0; the last may be shorter); then the
/// leverage (`k2 * v2` by default) is divided by its sum over the head and the first `sinks` rows
/// score 1. kvpress's optional random projection (`use_random_leverage`) is not offered: it draws an
/// unseeded Gaussian matrix.
///
/// Paper: Sengupta et al., "Value-Guided KV Compression for LLMs via Approximated CUR
/// Decomposition" (arXiv 2509.15038). Reference: NVIDIA/kvpress `cur_press.py` (kept sets equal to
/// kvpress 0.5.5's on the fixture prompt at ratios 0.5 and 0.8).
public struct CURScorer: KVStatelessScorer {
    /// How key and value energies combine.
    public enum Leverage: String, Sendable, CaseIterable {
        /// Keys alone.
        case key
        /// Values alone.
        case value
        /// `(k2 + v2) / 2`.
        case average
        /// `k2 * v2` (kvpress default `kv_product`).
        case product
    }

    /// First rows scored 1 (attention sinks; kvpress default 4).
    public let sinks: Int
    /// How key and value energies combine.
    public let leverage: Leverage
    /// Rows per normalization window, nil for none (kvpress default 16).
    public let localWindow: Int?

    /// Creates the scorer.
    /// - Throws: `KVError.invalidParameter` for negative sinks or a window below 1.
    public init(sinks: Int = 4, leverage: Leverage = .product, localWindow: Int? = 16) throws(KVError) {
        guard sinks >= 0 else { throw .invalidParameter(name: "sinks", value: "\(sinks)", expected: ">= 0") }
        if let w = localWindow, w < 1 {
            throw .invalidParameter(name: "localWindow", value: "\(w)", expected: ">= 1 rows, or nil for none")
        }
        self.sinks = sinks
        self.leverage = leverage
        self.localWindow = localWindow
    }

    /// The leverage score of every row.
    public func scores(_ context: KVLayerContext) -> KVScores {
        let d = context.shape.headDim
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { buf.deallocate() }
        return KVScores(heads: (0..<context.shape.kvHeads).map { m in
            let s = context.cache.head(context.layer, m)
            let n = s.count
            func energies(_ read: (Int) -> Void) -> [Float] {
                (0..<n).map { j in
                    read(j)
                    var e: Float = 0
                    for i in 0..<d { e += buf[i] * buf[i] }
                    return e
                }
            }
            var k2 = energies { s.key($0, into: buf, headDim: d) }
            var v2 = energies { s.value($0, into: buf, headDim: d) }
            if let w = localWindow {
                for start in stride(from: 0, to: n, by: w) {
                    let rows = start..<min(n, start + w)
                    let ks = rows.reduce(Float(0)) { $0 + k2[$1] }, vs = rows.reduce(Float(0)) { $0 + v2[$1] }
                    for j in rows {
                        k2[j] /= ks
                        v2[j] /= vs
                    }
                }
            }
            var scores: [Float] = (0..<n).map { j in
                switch leverage {
                case .key: return k2[j]
                case .value: return v2[j]
                case .average: return (k2[j] + v2[j]) / 2
                case .product: return k2[j] * v2[j]
                }
            }
            let total = scores.reduce(0, +)
            for j in 0..<n { scores[j] = j < sinks ? 1 : scores[j] / total }
            return scores
        })
    }
}
