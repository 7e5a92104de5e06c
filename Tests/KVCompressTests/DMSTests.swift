import XCTest
@testable import KVCompress

/// DMS: each entry scored once, evicted below the threshold once `window` newer entries follow.
final class DMSTests: XCTestCase {
    /// Knorm scores (-||k||) in double precision.
    private func norms(_ p: SyntheticPrompt, _ l: Int, _ m: Int, _ range: Range<Int>) -> [Double] {
        range.map { t in -p.key(l, t, m).reduce(0) { $0 + $1 * $1 }.squareRoot() }
    }

    /// The positions DMS keeps after `length` entries, all scored, with the last `window` protected.
    private func reference(_ p: SyntheticPrompt, _ l: Int, _ m: Int, length: Int, window: Int, threshold: Double) -> [Int] {
        let s = norms(p, l, m, 0..<length)
        return (0..<length).filter { $0 >= length - window || s[$0] >= threshold }
    }

    func testPromptAndDecodingEvictBelowTheThresholdOutsideTheWindow() throws {
        let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 16)
        let p = SyntheticPrompt(shape: shape, length: 64, seed: 11)
        // A threshold near the median score, so that both outcomes occur.
        let all = (0..<2).flatMap { l in (0..<2).flatMap { m in norms(p, l, m, 0..<64) } }.sorted()
        let threshold = Float(all[all.count / 2])
        for decoding in [false, true] {
            let cache = p.makeCache()
            let policy = try DMS(scorer: KnormScorer(), threshold: threshold, window: 8, decoding: decoding)
            let c = try p.prefill(policy, cache: cache, chunk: 16, prompt: 48)
            for l in 0..<2 {
                for m in 0..<2 {
                    XCTAssertEqual(cache.keptPositions(layer: l)[m],
                                   reference(p, l, m, length: 48, window: 8, threshold: Double(threshold)), "prompt, layer \(l) head \(m)")
                }
            }
            let afterPrompt = cache.keptPositions(layer: 0)
            XCTAssertLessThan(afterPrompt[0].count, 48)
            for t in 48..<64 { try p.decode(c, token: t) }
            for l in 0..<2 {
                for m in 0..<2 {
                    let expected = decoding ? reference(p, l, m, length: 64, window: 8, threshold: Double(threshold))
                        : reference(p, l, m, length: 48, window: 8, threshold: Double(threshold)) + Array(48..<64)
                    XCTAssertEqual(cache.keptPositions(layer: l)[m], expected, "decoding \(decoding), layer \(l) head \(m)")
                }
            }
        }
    }

    func testRefusals() {
        XCTAssertThrowsError(try DMS(scorer: KnormScorer(), threshold: .nan))
        XCTAssertThrowsError(try DMS(scorer: KnormScorer(), threshold: 0, window: -1))
    }
}
