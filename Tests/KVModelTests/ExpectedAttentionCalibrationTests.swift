import Foundation
@testable import KVCompress
import XCTest
@testable import KVModel

/// `kvcompress calibrate expected-attention` against a direct computation: the pre-RoPE queries of
/// each piece (recorded by a policy that evicts nothing), their mean and sample covariance in double
/// precision; and the shipped statistics are the default model's, found and well-formed.
final class ExpectedAttentionCalibrationTests: XCTestCase {
    /// Records the pre-RoPE queries of every prompt token of layer 3.
    struct Recorder: KVCachePolicy {
        final class Box: @unchecked Sendable { var rows: [[Float]] = [] }
        let box: Box
        func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
            guard context.layer == 3, let pre = context.preRoPEQueries else { return }
            for t in 0..<context.tokenCount where context.positions[t] >= 4 {
                box.rows.append(Array(UnsafeBufferPointer(start: pre + t * context.queryTokenStride,
                                                          count: context.shape.heads * context.shape.headDim)))
            }
        }
    }

    func testStatisticsAreTheQueriesMeanAndSampleCovariance() throws {
        let model = try TestSupport.model(.fast)
        let text = "The GNU coding standards were written by Richard Stallman and other GNU Project volunteers. "
            + "Their purpose is to make the GNU system clean, consistent, and easy to install. "
        var settings = ExpectedAttentionCalibration()
        settings.samples = 2
        settings.sampleCharacters = 90
        let stats = try settings.run(model: model, text: text)
        let box = Recorder.Box()
        for piece in [String(text.prefix(90)), String(text.dropFirst(90).prefix(90))] {
            _ = try LlamaSession(model: model, policy: Recorder(box: box)).prefill(try model.tokenizer.encode(piece))
        }
        let d = model.config.headDim, rope = try XCTUnwrap(model.shape.rope)
        for h in [0, 5] {
            let qs = box.rows.map { row in (0..<d).map { Double(row[h * d + $0]) } }
            let mu = (0..<d).map { i in qs.reduce(0) { $0 + $1[i] } / Double(qs.count) }
            let (mean, covariance) = stats.moments(layer: 3, head: h, pairing: rope.pairing)
            for i in 0..<d {
                XCTAssertEqual(mean[i], mu[i], accuracy: 1e-4 * max(1, abs(mu[i])), "head \(h) mean \(i)")
                for j in [0, 7, i] {
                    let c = qs.reduce(0) { $0 + ($1[i] - mu[i]) * ($1[j] - mu[j]) } / Double(qs.count - 1)
                    XCTAssertEqual(covariance[i * d + j], c, accuracy: 1e-4 * max(1, abs(c)), "head \(h) cov \(i),\(j)")
                }
            }
        }
    }

    func testShippedStatisticsAreTheDefaultModels() throws {
        let stats = try XCTUnwrap(HeadPatternFiles.defaultModel.expectedAttention, "the shipped statistics were not found")
        let c = try TestSupport.model(.fast).config
        XCTAssertEqual([stats.layers, stats.heads, stats.headDim], [c.layers, c.heads, c.headDim])
    }
}
