import Foundation

/// Finds the files KVModel ships as SwiftPM resources (`Sources/KVModel/Resources`), without
/// `Bundle.module` (which stops the process when its bundle is missing): the resource bundle beside
/// the running executable (`KVCompress_KVModel.resources` on Linux, `.bundle` on Apple platforms),
/// then the package's source tree (a checkout running its own build).
enum ShippedResources {
    /// The resource directory `name`, or nil when it is in none of the places looked at.
    static func directory(_ name: String) -> String? {
        var roots: [URL] = []
        for base in [Bundle.main.bundleURL, Bundle.main.executableURL?.deletingLastPathComponent()].compactMap({ $0 }) {
            roots.append(base.appendingPathComponent("KVCompress_KVModel.resources"))
            roots.append(base.appendingPathComponent("KVCompress_KVModel.bundle"))
            roots.append(base.appendingPathComponent("KVCompress_KVModel.bundle/Contents/Resources"))
        }
        roots.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources"))
        var isDirectory: ObjCBool = false
        return roots.map { $0.appendingPathComponent(name).path }.first {
            FileManager.default.fileExists(atPath: $0, isDirectory: &isDirectory) && isDirectory.boolValue
        }
    }
}
