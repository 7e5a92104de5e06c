import XCTest

final class KVCompressTestsPlaceholder: XCTestCase {
    func testBuilds() {}
}
