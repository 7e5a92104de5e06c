import Foundation
import XCTest
@testable import KVModel

final class ModelStoreTests: XCTestCase {
    func testSHA256KnownVectors() {
        func hex(_ s: String) -> String {
            var h = SHA256()
            h.update(Array(s.utf8))
            return h.finalizeHex()
        }
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Streaming in odd pieces equals one shot.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var oneShot = SHA256()
        oneShot.update(data)
        var pieces = SHA256()
        var i = 0
        for step in [1, 63, 64, 65, 7, 300, 500] where i < data.count {
            pieces.update(data[i..<min(data.count, i + step)])
            i += step
        }
        pieces.update(data[min(i, data.count)...])
        XCTAssertEqual(pieces.finalizeHex(), oneShot.finalizeHex())
    }

    func testDefaultModelIsVerifiedAndReused() throws {
        _ = try TestSupport.model(.fast)  // skips or fails (CI) when unavailable
        let url = try ModelStore.defaultModelURL()
        XCTAssertEqual(url.lastPathComponent, ModelStore.defaultFileName)
        XCTAssertTrue(try ModelStore.verify(url))
        XCTAssertEqual(try ModelStore.resolve("default"), url)
    }

    func testBadFilesAreRejected() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvstore-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let bogus = dir.appendingPathComponent(ModelStore.defaultFileName)
        try Data(repeating: 7, count: 1000).write(to: bogus)
        XCTAssertFalse(try ModelStore.verify(bogus))
        XCTAssertThrowsError(try ModelStore.resolve(dir.appendingPathComponent("missing.gguf").path)) { error in
            guard case KVError.io = error else { return XCTFail("expected an I/O error, got \(error)") }
        }
    }
}
