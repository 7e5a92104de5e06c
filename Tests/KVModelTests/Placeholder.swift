import XCTest

final class KVModelTestsPlaceholder: XCTestCase {
    func testBuilds() {}
}
