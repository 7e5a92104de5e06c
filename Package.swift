// swift-tools-version:6.0
import PackageDescription

// KVCompress: KV-cache compression policies for LLM inference.
// Layers (imports point down): kvbench / kvcompress -> KVModel -> KVCompress -> KVCore -> CKVKernels.
// No unsafe compiler flags anywhere: the C kernels select their ISA per function at run time, so the
// package builds unchanged as a SwiftPM dependency.
let package = Package(
    name: "KVCompress",
    platforms: [.macOS(.v14), .iOS(.v17)],
    products: [
        .library(name: "KVCompress", targets: ["KVCompress", "KVCore"]),
        .library(name: "KVModel", targets: ["KVModel"]),
        .executable(name: "kvbench", targets: ["kvbench"]),
        .executable(name: "kvcompress", targets: ["kvcompress"]),
    ],
    targets: [
        .target(
            name: "CKVKernels",
            cSettings: [.define("_GNU_SOURCE", .when(platforms: [.linux]))]
        ),
        .target(name: "KVCore", dependencies: ["CKVKernels"]),
        .target(name: "KVCompress", dependencies: ["KVCore"]),
        // Resources/: the default model's Expected Attention statistics (kvcompress calibrate expected-attention).
        .target(name: "KVModel", dependencies: ["KVCompress", "KVCore"], resources: [.copy("Resources/expected-attention-stats")]),
        .executableTarget(name: "kvcompress", dependencies: ["KVModel", "KVCompress", "KVCore"]),
        .executableTarget(
            name: "kvbench",
            dependencies: ["KVModel", "KVCompress", "KVCore", "CKVKernels"],
            path: "Benchmarks/kvbench"
        ),
        .testTarget(name: "KVCoreTests", dependencies: ["KVCore", "CKVKernels"]),
        .testTarget(name: "KVCompressTests", dependencies: ["KVCompress", "KVCore"]),
        // Fixtures/ holds reference outputs the tests read by path (Scripts/ regenerates them).
        .testTarget(name: "KVModelTests", dependencies: ["KVModel", "KVCompress", "KVCore"], exclude: ["Fixtures"]),
    ]
)
