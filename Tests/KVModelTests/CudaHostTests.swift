@testable import KVCompress
import XCTest
@testable import KVModel

/// The host with attention on the GPU (`KVCache.setBackend(.cuda)`): the same kept sets and logits
/// as on the CPU. Skips without a usable CUDA device. CI runs it against the CPU emulation of the
/// kernels (a driver library built by `Scripts/cuda_emulation.sh --driver`, named by
/// `KVCOMPRESS_CUDA_DRIVER`), so the whole path (shim, device copies, appends, recopies after
/// eviction) runs on every change.
final class CudaHostTests: XCTestCase {
    override func setUpWithError() throws {
        if let reason = CudaDevice.unavailableReason { throw XCTSkip("no CUDA device: \(reason)") }
    }

    /// Prefill in one pass, then each layer compressed: decode-free policies of every kind (window
    /// observations, accumulated column sums, head-adaptive and layer-adaptive budgets).
    func testKeptSetsEqualTheCPUs() throws {
        let model = try TestSupport.model(.exact, layers: 6)
        let ids = try model.tokenizer.encode(PasskeyPrompt(fillerBefore: 8, fillerAfter: 12).text)
        for name in ["SnapKV", "H2O", "TOVA", "AdaKV", "ObservedAttention", "PyramidKV", "Knorm"] {
            let policy = try KVPolicyCatalog.make(name, budget: .compressionRatio(0.5), patterns: KVHeadPatterns())
            let cpu = try KeptPositions.compute(model: model, promptTokens: ids, policy: policy, backend: .cpu)
            let gpu = try KeptPositions.compute(model: model, promptTokens: ids, policy: policy, backend: .cuda)
            XCTAssertEqual(cpu, gpu, "\(name) on \(ids.count) tokens")
        }
    }

    /// Chunked prefill and decode steps: the GPU copy grows by appends (full cache), is copied again
    /// after every eviction (H2O and a StreamingLLM window evict while decoding), and gives the
    /// CPU's logits and kept entries. In exact mode: fast mode quantizes the attention output to
    /// int8 before the output projection, where a difference of an ulp can flip a code and move
    /// logits by ~0.2 (measured), so only exact mode compares the attention itself.
    func testDecodeWithAppendsAndEvictionsMatchesTheCPU() throws {
        let model = try TestSupport.model(.exact, layers: 6)
        let ids = (0..<300).map { Int32(1 + $0 * 37 % 4000) }
        let policies: [(String, any KVCachePolicy)] = [
            ("full cache", FullCache()),
            ("H2O 160 tokens", try H2O(budget: .tokens(160))),
            ("StreamingLLM 4 + 60", try StreamingLLM(sinks: 4, window: 60)),
        ]
        for (name, policy) in policies {
            var logits: [[Float]] = [], kept: [[[Int]]] = []
            for backend in [KVBackend.cpu, .cuda] {
                let session = try LlamaSession(model: model, policy: policy, chunkSize: 128)
                try session.cache.setBackend(backend)
                var out = try session.prefill(Array(ids[0..<280]))
                for id in ids[280...] { out += try session.decode(id) }
                logits.append(out)
                kept.append((0..<6).flatMap { session.cache.keptPositions(layer: $0) })
                if backend == .cuda && policy is FullCache {
                    // Each layer copied once, then only grown: 3 prefill chunks and 20 steps fit its room.
                    XCTAssertEqual(session.cache.cudaLayerCopies, 6, "\(name): whole-layer copies")
                }
            }
            let difference = zip(logits[0], logits[1]).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
            XCTAssertLessThanOrEqual(difference, 1e-3, "\(name): largest logit difference")
            XCTAssertEqual(kept[0], kept[1], "\(name): kept entries")
        }
    }
}
