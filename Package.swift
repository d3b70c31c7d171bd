// swift-tools-version: 6.0
//
// Dependency graph (one way only):
//
//   GGUF ──────────────┐
//   CSLMKernels → SLMKernels ─┴→ SLMModel → (SLMEngine → SLMServer) → slmd
//   SLMProtocol → (SLMServer, slmctl)        slmctl never links the model
//
// GGUF knows nothing of models; SLMKernels knows nothing of files. SLMModel joins them.
import PackageDescription

let package = Package(
    name: "slmd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "slmd", targets: ["slmd"]),
        .library(name: "SLMModel", targets: ["SLMModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Parse and validate a GGUF file over a read-only mmap.
        .target(name: "GGUF"),
        // The innermost int8/f16 dot products, with runtime CPU dispatch. Each has a
        // portable Swift twin in SLMKernels that tests compare against.
        .target(name: "CSLMKernels"),
        // Quant block formats, reference and fast kernels, the thread pool.
        .target(name: "SLMKernels", dependencies: ["CSLMKernels"]),
        // Config, weights view, KV cache, forward pass, tokenizer, chat template, sampler.
        .target(name: "SLMModel", dependencies: ["GGUF", "SLMKernels"]),
        .executableTarget(
            name: "slmd",
            dependencies: [
                "SLMModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF"]),
        .testTarget(name: "SLMKernelsTests", dependencies: ["SLMKernels", "CSLMKernels"]),
        .testTarget(name: "SLMModelTests", dependencies: ["SLMModel", "GGUF", "SLMKernels"]),
    ],
    swiftLanguageModes: [.v6]
)
