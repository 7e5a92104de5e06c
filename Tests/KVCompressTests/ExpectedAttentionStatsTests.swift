import XCTest
@testable import KVCompress

/// Offline Expected Attention statistics: the scorer with statistics equal to the prompt's own
/// (population covariance, as the live scorer uses) keeps what the live scorer keeps, whatever the
/// host's RoPE pairing (the statistics are stored in Hugging Face's order); files round-trip.
final class ExpectedAttentionStatsTests: XCTestCase {
    func testStatisticsOfThePromptKeepWhatTheLiveScorerKeeps() throws {
        for pairing in [RoPEPairing.neox, .interleaved] {
            let shape = SyntheticPrompt.shape(layers: 2, heads: 4, kvHeads: 2, headDim: 16, pairing: pairing)
            let p = SyntheticPrompt(shape: shape, length: 40, seed: 21)
            let d = shape.headDim
            // The prompt's moments in the host's order, from position 4 on, in double precision.
            var means: [[[Double]]] = [], covariances: [[[Double]]] = []
            for l in 0..<shape.layers {
                var layerMeans: [[Double]] = [], layerCovariances: [[Double]] = []
                for h in 0..<shape.heads {
                    let qs = (4..<40).map { t in (0..<d).map { Double(p.preQueries[l][(t * shape.heads + h) * d + $0]) } }
                    let mu = (0..<d).map { i in qs.reduce(0) { $0 + $1[i] } / Double(qs.count) }
                    layerMeans.append(mu)
                    layerCovariances.append((0..<(d * d)).map { k in
                        qs.reduce(0) { $0 + ($1[k / d] - mu[k / d]) * ($1[k % d] - mu[k % d]) } / Double(qs.count)
                    })
                }
                means.append(layerMeans)
                covariances.append(layerCovariances)
            }
            let stats = try ExpectedAttentionStats(hostMean: means, hostCovariance: covariances, pairing: pairing)
            // Stored in Hugging Face's order: for the interleaved pairing, host dimension 1 is HF's d/2.
            XCTAssertEqual(Double(stats.mean[pairing == .neox ? 1 : d / 2]), means[0][0][1], accuracy: 1e-6)
            let live = p.makeCache(), offline = p.makeCache()
            try p.prefill(ExpectedAttention(budget: .compressionRatio(0.5)), cache: live, chunk: 16)
            try p.prefill(ExpectedAttention(budget: .compressionRatio(0.5), statistics: stats), cache: offline, chunk: 16)
            for l in 0..<shape.layers {
                XCTAssertEqual(offline.keptPositions(layer: l), live.keptPositions(layer: l), "\(pairing) layer \(l)")
            }
            XCTAssertLessThan(live.count(layer: 0, head: 0), 40)
        }
    }

    func testFilesRoundTripAndShapesAreChecked() throws {
        let mean = (0..<64).map { Float($0) / 8 }
        let stats = try ExpectedAttentionStats(layers: 1, heads: 4, headDim: 16, mean: mean, covariance: (0..<1024).map { Float($0 % 17) })
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("eas-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try stats.write(directory: dir)
        XCTAssertEqual(try ExpectedAttentionStats(directory: dir), stats)
        try stats.write(directory: dir, dtype: "F16")  // these values are exact in f16
        XCTAssertEqual(try ExpectedAttentionStats(directory: dir), stats)
        XCTAssertThrowsError(try ExpectedAttentionStats(layers: 1, heads: 4, headDim: 16, mean: mean, covariance: []))
        // Statistics for another model are refused when scoring.
        let p = SyntheticPrompt(shape: SyntheticPrompt.shape(layers: 1, heads: 4, kvHeads: 2, headDim: 32), length: 20, seed: 1)
        XCTAssertThrowsError(try p.prefill(ExpectedAttention(budget: .compressionRatio(0.5), statistics: stats), cache: p.makeCache())) {
            guard case KVError.shapeMismatch = $0 else { return XCTFail("\($0)") }
        }
    }
}
