import Foundation
import KVCompress
import KVCore

/// A policy that evicts nothing and measures, during the prefill of a repeated random sequence
/// (`[BOS] + r + r + ... `, period `period`), each query head's echo and induction attention mass:
/// for a query at position `i > period`, the probability it gives to the earlier occurrences of its
/// own token (positions `i - k period >= 1`) and to the tokens that followed them (`i - k period + 1`).
/// ``RazorCalibration`` reads the sums from ``totals`` after the prefill.
struct RazorHeadProbe: KVCachePolicy {
    /// Sums per layer and query head, filled by the hooks (one sequence at a time, from the
    /// compressor's thread).
    final class Totals: @unchecked Sendable {
        var echo: [[Double]]
        var induction: [[Double]]
        init(layers: Int, heads: Int) {
            echo = Array(repeating: Array(repeating: 0, count: heads), count: layers)
            induction = echo
        }
    }

    let period: Int
    let totals: Totals
    /// Query tokens whose probabilities are taken at once.
    static let block = 64

    func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
        let l = context.layer
        var t0 = 0
        while t0 < context.tokenCount {
            let range = t0..<min(context.tokenCount, t0 + Self.block)
            defer { t0 = range.upperBound }
            guard Int(context.positions[range.upperBound - 1]) > period else { continue }
            let a = context.attention(tokens: range)
            for (q, t) in range.enumerated() {
                let i = Int(context.positions[t])
                guard i > period else { continue }
                for h in 0..<context.shape.heads {
                    var echo = 0.0, induction = 0.0
                    var j = i - period
                    while j >= 1 {  // the cache holds every position: row j is position j
                        echo += Double(a[h, q, j])
                        induction += Double(a[h, q, j + 1])
                        j -= period
                    }
                    totals.echo[l][h] += echo
                    totals.induction[l][h] += induction
                }
            }
        }
    }

    var name: String { "RazorHeadProbe" }
}
