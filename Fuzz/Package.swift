// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for KVCompress's GGUF reader and tokenizer, kept out of the main package so that
// its manifest stays free of unsafe flags. Build and run them with `bash Fuzz/run.sh [seconds]`
// (see README.md): the sanitizer and coverage flags come from the command line, so that they
// instrument the library code too, not only these harnesses.
// A path dependency's identity is its directory's name, so this reads the checkout's name
// instead of assuming one ("main", "KVCompress", "kvcompress-ci"...).
let parentIdentity = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "KVCompress")
let kvModel: Target.Dependency = .product(name: "KVModel", package: parentIdentity)

let package = Package(
    name: "KVCompressFuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(name: "FuzzGGUF", dependencies: [kvModel]),
        .executableTarget(name: "FuzzTokenizer", dependencies: [kvModel]),
    ]
)
