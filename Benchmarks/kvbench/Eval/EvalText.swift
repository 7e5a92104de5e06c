import Foundation
import KVModel

/// The long real text of the streaming-perplexity task: the GNU Coding Standards as the Debian
/// package `gnu-standards` 2022.03.23-0.1 ships it (`usr/share/doc/gnu-standards/standards.text.gz`,
/// 235,073 bytes, 58,662 tokens of the default model), written by people for people, not for this
/// project. Fetched once into the model cache (`$KVCOMPRESS_CACHE/texts`), pinned by the package's
/// version and SHA-256: with `apt-get download` where it exists (Debian, Ubuntu; no root needed),
/// else from the same file in the Debian archive's pool with Python; extracted with Python.
enum EvalText {
    static let package = "gnu-standards"
    static let version = "2022.03.23-0.1"
    static let debSHA256 = "2087dda531c69d8505856a45e0334746f3f25211a237c95d375eed13a7d8c201"
    static let debFile = "gnu-standards_2022.03.23-0.1_all.deb"
    static let poolURL = "http://deb.debian.org/debian/pool/main/g/gnu-standards/" + debFile
    static let member = "usr/share/doc/gnu-standards/standards.text.gz"

    /// The text's length in tokens of the default model.
    static let tokens = 58_662

    /// How the report names the text.
    static var label: String { "Debian \(package) \(version) (\(debFile) sha256 \(debSHA256)), \(member)" }

    /// The text, fetched and extracted on first use.
    /// - Throws: `KVError.modelUnavailable` saying what to run when it cannot be fetched or does
    ///   not verify.
    static func load() throws -> String {
        let dir = ModelStore.cacheDirectory.appendingPathComponent("texts", isDirectory: true)
        let target = dir.appendingPathComponent("gnu-standards-\(version).txt")
        if let text = try? String(contentsOf: target, encoding: .utf8) { return text }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let deb = dir.appendingPathComponent(debFile)
        if (try? ModelStore.sha256(of: deb)) != debSHA256 {
            log("fetching the perplexity text: \(package) \(version)")
            try? FileManager.default.removeItem(at: deb)
            if !run(["apt-get", "download", "\(package)=\(version)"], in: dir) {
                let script = "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])"
                guard run(["python3", "-c", script, poolURL, deb.path], in: dir) else {
                    throw KVError.modelUnavailable("could not fetch \(debFile) with apt-get or from \(poolURL); "
                        + "download it into \(dir.path) yourself")
                }
            }
        }
        guard (try? ModelStore.sha256(of: deb)) == debSHA256 else {
            throw KVError.modelUnavailable("\(deb.path) does not have SHA-256 \(debSHA256); delete it and run again")
        }
        // A .deb is an ar archive holding data.tar.xz (or .gz / .zst); Python reads all three but zstd.
        let extract = """
            import gzip, io, sys, tarfile
            data = open(sys.argv[1], 'rb').read()
            assert data[:8] == b'!<arch>\\n', 'not an ar archive'
            i = 8
            while i < len(data):
                name, size = data[i:i+16].decode().strip().rstrip('/'), int(data[i+48:i+58].decode())
                body = data[i+60:i+60+size]
                if name.startswith('data.tar'):
                    with tarfile.open(fileobj=io.BytesIO(body)) as t:
                        member = t.extractfile('./' + sys.argv[2]) or t.extractfile(sys.argv[2])
                        open(sys.argv[3], 'wb').write(gzip.decompress(member.read()))
                    sys.exit(0)
                i += 60 + size + (size & 1)
            sys.exit('no data.tar member')
            """
        let partial = target.appendingPathExtension("partial")
        guard run(["python3", "-c", extract, deb.path, member, partial.path], in: dir) else {
            throw KVError.modelUnavailable("could not extract \(member) from \(deb.path) (needs python3)")
        }
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: partial, to: target)
        return try String(contentsOf: target, encoding: .utf8)
    }

    /// Runs a tool quietly; whether it succeeded.
    private static func run(_ arguments: [String], in directory: URL) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    private static func log(_ message: String) {
        FileHandle.standardError.write(Data("kvbench: \(message)\n".utf8))
    }
}
