import XCTest
@testable import KVCore

final class ElementTypeTests: XCTestCase {
    func testByteCounts() {
        XCTAssertEqual(ElementType.q8_0.byteCount(elements: 64), 68)
        XCTAssertEqual(ElementType.q4_1.byteCount(elements: 32), 20)
        XCTAssertEqual(ElementType.f16.byteCount(elements: 3), 6)
    }
}
