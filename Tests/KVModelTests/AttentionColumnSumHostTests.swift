import KVCompress
import KVCore
import XCTest
@testable import KVModel

/// The Llama host hands its prefill and decode attention's column sums to policies that ask for
/// them, and accumulating them gives what probing the attention gives.
final class AttentionColumnSumHostTests: XCTestCase {
    /// What the probe saw: hooks with and without column sums, and the worst relative difference
    /// between accumulated attention from the sums and from probing.
    final class Record: @unchecked Sendable {
        var withSums = 0
        var withoutSums = 0
        var worst: Float = 0
    }

    /// Asks for column sums and checks them against probing in every prefill and decode hook.
    struct Probe: KVCachePolicy {
        let record: Record
        var needsAttentionColumnSums: Bool { true }
        func afterDecode(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
            try afterPrefill(context, state: &state)
        }
        func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
            guard context.attentionColumnSums != nil else {
                record.withoutSums += 1
                return
            }
            record.withSums += 1
            var fused = KVAccumulatedAttention(shape: context.shape)
            fused.accumulate(context, blockSize: 64)
            let plain = KVLayerContext(layer: context.layer, shape: context.shape, phase: context.phase,
                                       queries: context.queries, preRoPEQueries: context.preRoPEQueries,
                                       queryTokenStride: context.queryTokenStride, positions: context.positions,
                                       tokenCount: context.tokenCount, totalLength: context.totalLength,
                                       isFirstChunk: context.isFirstChunk, isLastChunk: context.isLastChunk,
                                       cache: context.cache, pool: context.pool)
            var probed = KVAccumulatedAttention(shape: context.shape)
            probed.accumulate(plain, blockSize: 64)
            for m in 0..<context.shape.kvHeads {
                for p in context.positions(head: m) {
                    let a = fused.value(layer: context.layer, head: m, position: Int(p))
                    let b = probed.value(layer: context.layer, head: m, position: Int(p))
                    record.worst = max(record.worst, abs(a - b) / (abs(b) + 1e-4))
                }
            }
        }
    }

    func testSessionPassesColumnSumsThatMatchProbing() throws {
        let model = try TestSupport.model(.fast)
        let ids = Array(try TestSupport.ids("passkey_prompt.json", key: "prompt_ids").prefix(301))
        let layers = model.config.layers
        for chunk in [301, 128] {
            let record = Record()
            let session = try LlamaSession(model: model, policy: Probe(record: record), chunkSize: chunk)
            _ = try session.prefill(ids)
            _ = try session.decode(ids[0])  // decode: column sums too (checked in afterDecode)
            let chunks = (ids.count + chunk - 1) / chunk
            XCTAssertEqual(record.withSums, layers * (chunks + 1), "chunk \(chunk): prefill chunks and one decode step")
            XCTAssertEqual(record.withoutSums, 0, "chunk \(chunk)")
            XCTAssertLessThan(record.worst, 1e-3, "chunk \(chunk)")
        }
        // A policy that does not ask gets none.
        final class Seen: @unchecked Sendable { var sums = 0 }
        struct Plain: KVCachePolicy {
            let seen: Seen
            func afterPrefill(_ context: KVLayerContext, state: inout KVNoState) throws(KVError) {
                if context.attentionColumnSums != nil { seen.sums += 1 }
            }
        }
        let seen = Seen()
        _ = try LlamaSession(model: model, policy: Plain(seen: seen), chunkSize: 64).prefill(ids)
        XCTAssertEqual(seen.sums, 0)
    }
}
