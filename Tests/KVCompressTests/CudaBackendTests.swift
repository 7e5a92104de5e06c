import CKVCuda
import KVCompress
import XCTest

/// The CUDA backend: its "unavailable" state everywhere, its PTX, and, where a GPU is present,
/// its results against the CPU kernels (skipped with the reason elsewhere).
final class CudaBackendTests: XCTestCase {
    func testUnavailableIsAReportedStateNotACrash() throws {
        guard let reason = CudaDevice.unavailableReason else {
            XCTAssertEqual(try KVBackend.automatic.resolved(), .cuda)
            return
        }
        XCTAssertTrue(reason.contains("CUDA"), reason)
        XCTAssertEqual(try KVBackend.automatic.resolved(), .cpu)
        XCTAssertThrowsError(try KVBackend.cuda.resolved()) { error in
            guard case let .backend(message) = error as? KVError else { return XCTFail("\(error)") }
            XCTAssertEqual("backend error: " + message, reason)
        }
        XCTAssertThrowsError(try CudaBuffer(byteCount: 16))
        let cache = try KVCache(layers: 1, kvHeads: 1, headDim: 32)
        XCTAssertThrowsError(try cache.setBackend(.cuda))
        XCTAssertEqual(cache.backend, .cpu)
        try cache.setBackend(.automatic)
        XCTAssertEqual(cache.backend, .cpu)
    }

    func testProbeSaysWhyADriverIsUnusable() throws {
        let missing = try XCTUnwrap(CudaDevice.probe(driverPath: "/nonexistent/libcuda.so.1"))
        XCTAssertTrue(missing.contains("cannot load /nonexistent/libcuda.so.1"), missing)
        #if os(Linux)
        let notCuda = try XCTUnwrap(CudaDevice.probe(driverPath: "libm.so.6"))
        XCTAssertTrue(notCuda.contains("lacks cuInit"), notCuda)
        #endif
    }

    func testEmbeddedPTXHoldsEveryKernelForCompute80() {
        let ptx = String(cString: kvcu_ptx())
        XCTAssertTrue(ptx.contains(".target sm_80"))
        for kernel in ["kvcu_decode_partial", "kvcu_decode_merge", "kvcu_decode_column_sums", "kvcu_prefill",
                       "kvcu_prefill_column_sums", "kvcu_observe_logits", "kvcu_softmax_rows", "kvcu_gather_rows"] {
            XCTAssertTrue(ptx.contains(".entry \(kernel)("), kernel)
        }
    }

    /// Every row format, two head dimensions, a ragged layer with a merged entry: decode, prefill,
    /// column sums, observation and compaction on the GPU within 1e-3 of the CPU.
    func testCudaMatchesTheCPUKernels() throws {
        if let reason = CudaDevice.unavailableReason { throw XCTSkip("no GPU here: \(reason)") }
        for headDim in [64, 128] {
            for type in [ElementType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1] {
                let cache = try KVCache(layers: 1, kvHeads: 3, headDim: headDim, keyType: type, valueType: type)
                var rng = SystemRandomNumberGenerator()
                let tokens = 700
                let keys = (0..<(tokens * 3 * headDim)).map { _ in Float.random(in: -1...1, using: &rng) }
                let values = (0..<(tokens * 3 * headDim)).map { _ in Float.random(in: -1...1, using: &rng) }
                try cache.append(layer: 0, keys: keys, values: values, positions: (0..<tokens).map { Int32(2 * $0) })
                try cache.retain(layer: 0, head: 1, indices: Array(stride(from: 0, to: tokens, by: 3)))
                try cache.merge(layer: 0, head: 2, rows: 5..<25)
                let queries = (0..<(37 * 9 * headDim)).map { _ in Float.random(in: -1...1, using: &rng) }
                let positions = (0..<37).map { Int32(1330 + 2 * $0) }
                let diff = try cache.cudaDifferences(layer: 0, heads: 9, queries: queries, queryPositions: positions)
                XCTAssertLessThanOrEqual(diff.maximum, 1e-3, "\(type), d \(headDim): \(diff)")
                XCTAssertTrue(diff.compactedPositionsEqual, "\(type), d \(headDim)")
            }
        }
    }
}
