import XCTest
@testable import KVCore

final class TensorTests: XCTestCase {
    func testRoundTripPerType() throws {
        var rng = SystemRandomNumberGenerator()
        let values = (0..<(4 * 64)).map { _ in Float.random(in: -2...2, using: &rng) }
        for type in ElementType.allCases {
            let t = try Tensor(values, shape: [4, 64], type: type)
            XCTAssertEqual(t.byteCount, type.byteCount(elements: 256))
            let back = t.floats()
            // Per-element bound from the type's precision (block types: half a quantization step
            // of the block's scale, plus the f16 rounding of that scale).
            let bound: Float = switch type {
            case .f32: 0
            case .f16: 2 * 0.001
            case .bf16: 2 * 0.008
            case .q8_0: 2.0 / 127 * 0.51 + 0.002
            case .q4_0: 2.0 / 8 + 0.01  // GGML maps the signed max to -8: the far end clamps at +7
            case .q4_1: 4.0 / 15 * 0.51 + 0.01
            case .q2_1: 4.0 / 3 * 0.51 + 0.01
            }
            for (a, b) in zip(values, back) { XCTAssertLessThanOrEqual(abs(a - b), bound, "\(type)") }
        }
    }

    func testShapeErrors() {
        XCTAssertThrowsError(try Tensor([1, 2, 3], shape: [2, 2])) { error in
            guard case KVError.shapeMismatch = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try Tensor(zeros: [2, 33], type: .q8_0))
        XCTAssertThrowsError(try Tensor(zeros: [-1, 4], type: .f32))
        XCTAssertThrowsError(try Tensor(zeros: [Int.max, 4], type: .f32))
        XCTAssertEqual(try Tensor(zeros: [0, 32], type: .q4_1).count, 0)
    }

    func testCopyOnWrite() throws {
        let a = try Tensor([1, 2, 3, 4], shape: [4])
        var b = a
        b.withUnsafeMutableBytes { $0.storeBytes(of: Float(9), toByteOffset: 0, as: Float.self) }
        XCTAssertEqual(a.floats(), [1, 2, 3, 4])
        XCTAssertEqual(b.floats(), [9, 2, 3, 4])
        XCTAssertEqual(try b.converted(to: .f16).floats(), [9, 2, 3, 4])
    }
}
