// swift-tools-version: 6.0
//
// Dependency graph (one way only):
//
//   GGUF ──→ SLMTokenizer ──→ SLMConstraint ──┐
//   GGUF, SLMKernels (CSLMKernels) ───────────┴→ SLMModel → SLMEngine ─┐
//   SLMProtocol ───────────────────────────────────────────────────────┼→ SLMServer → slmd
//   CSystemd → SLMSystemd ─────────────────────────────────────────────┘
//   SLMProtocol → slmctl          (slmctl never links the model)
//   SLMLimits: a leaf, every request bound and default, used by SLMProtocol, SLMModel,
//              SLMEngine, SLMServer and slmctl (--help and its checks)
//   SLMJSON:   a leaf, JSON text's lexical rules, used by SLMProtocol (payloads) and
//              SLMConstraint (schemas)
//
// GGUF knows nothing of models; SLMKernels knows nothing of files; SLMProtocol does no I/O.
// SLMTokenizer is text ↔ token ids (tokenizers, pre-tokenizers, streaming detokenizer, chat
// templates); SLMConstraint is JSON schemas over a tokenizer's vocabulary (ordered JSON,
// schema compiler, automaton, vocabulary trie, masks) and knows nothing of weights;
// SLMModel is config, weights, KV cache, forward pass, sampler and generators.
// Every module a target imports is declared below (slmd and SLMServer also use GGUF and
// SLMKernels directly: model info, kernel path), so the graph is the one that builds.
import PackageDescription

let package = Package(
    name: "slmd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "slmd", targets: ["slmd"]),
        .executable(name: "slmctl", targets: ["slmctl"]),
        .library(name: "SLMModel", targets: ["SLMModel"]),
        .library(name: "SLMTokenizer", targets: ["SLMTokenizer"]),
        .library(name: "SLMConstraint", targets: ["SLMConstraint"]),
        .library(name: "SLMProtocol", targets: ["SLMProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // Parse and validate a GGUF file over a read-only mmap.
        .target(name: "GGUF"),
        // The innermost int8/f16 dot products, with runtime CPU dispatch. Each has a
        // portable Swift twin in SLMKernels that tests compare against.
        .target(name: "CSLMKernels"),
        // Quant block formats, reference and fast kernels, the thread pool.
        .target(name: "SLMKernels", dependencies: ["CSLMKernels"]),
        // Tokenizers (BPE, SentencePiece), pre-tokenizers, streaming detokenizer, chat templates.
        .target(name: "SLMTokenizer", dependencies: ["GGUF"]),
        // JSON-schema constrained decoding: ordered JSON, schema compiler, automaton,
        // vocabulary trie, token masks.
        .target(name: "SLMConstraint", dependencies: ["SLMTokenizer", "SLMJSON"]),
        // Config, weights view, KV cache, forward pass, sampler, generators.
        .target(name: "SLMModel", dependencies: ["GGUF", "SLMKernels", "SLMTokenizer", "SLMConstraint", "SLMLimits"]),
        // Every request bound and default, with unit and range, defined once for all layers.
        .target(name: "SLMLimits"),
        // Frames and messages of the socket protocol: no I/O, shared by daemon and client.
        .target(name: "SLMProtocol", dependencies: ["SLMLimits", "SLMJSON"]),
        // The lexical rules of JSON text (whitespace, literals, numbers, strings and their
        // escapes), read once for the protocol's parser and the schemas' parser.
        .target(name: "SLMJSON"),
        // libsystemd through pkg-config: notify, socket activation, journal.
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .target(name: "SLMSystemd", dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")]),
        // Scheduler: thread and memory caps, queue, continuous batching, cancellation.
        .target(name: "SLMEngine", dependencies: ["SLMModel", "SLMTokenizer", "SLMConstraint", "SLMKernels", "SLMLimits", .product(name: "Logging", package: "swift-log")]),
        // The Unix-socket server: framing, sessions, access control.
        .target(name: "SLMServer", dependencies: ["SLMEngine", "SLMModel", "SLMTokenizer", "SLMConstraint", "SLMKernels",
                                                  "SLMLimits", "SLMProtocol", "SLMSystemd", .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "slmd",
            dependencies: [
                "GGUF", "SLMKernels", "SLMTokenizer", "SLMConstraint", "SLMModel", "SLMProtocol", "SLMServer", "SLMEngine", "SLMSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "slmctl",
            dependencies: ["SLMProtocol", "SLMLimits", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // What every test target shares: the model lookup, the daemon launcher, temporary
        // directories for sockets, the seeded RNG, tiny GGUF files, the real model's
        // tokenizer and llama.cpp's reference fixtures, the reference schema matcher and
        // schema generator. Of slmd's own it links only GGUF, SLMTokenizer and SLMConstraint
        // (public API only: it is built without testing enabled in a plain build).
        .target(name: "SLMTestSupport", dependencies: ["GGUF", "SLMTokenizer", "SLMConstraint"], path: "Tests/SLMTestSupport"),
        .testTarget(name: "GGUFTests", dependencies: ["GGUF", "SLMTestSupport"]),
        .testTarget(name: "SLMKernelsTests", dependencies: ["SLMTestSupport", "SLMKernels", "CSLMKernels"]),
        // One test target per module: tokenizers and chat templates; schemas, automaton and
        // masks; the model (reference outputs, forward pass, sampler, constrained generation).
        .testTarget(name: "SLMTokenizerTests", dependencies: ["SLMTestSupport", "SLMTokenizer", "GGUF"]),
        .testTarget(name: "SLMConstraintTests", dependencies: ["SLMTestSupport", "SLMConstraint", "SLMTokenizer"]),
        .testTarget(name: "SLMModelTests",
                    dependencies: ["SLMTestSupport", "SLMModel", "SLMTokenizer", "SLMConstraint", "GGUF", "SLMKernels"]),
        .testTarget(name: "SLMProtocolTests", dependencies: ["SLMTestSupport", "SLMProtocol", "SLMLimits"]),
        .testTarget(name: "SLMSystemdTests", dependencies: ["SLMTestSupport", "SLMSystemd"]),
        .testTarget(name: "SLMEngineTests", dependencies: ["SLMTestSupport", "SLMEngine", "SLMModel", "SLMKernels"]),
        .testTarget(name: "SLMServerTests", dependencies: ["SLMTestSupport", "SLMServer", "SLMProtocol", "SLMEngine", "SLMModel",
                                                      "SLMTokenizer", "SLMConstraint", "SLMLimits", "GGUF",
                                                      .product(name: "Logging", package: "swift-log")]),
        // Runs the built slmctl binary (found beside the test bundle) against a fake server
        // and against `slmd serve` with the real model; links only the protocol.
        .testTarget(name: "SlmctlTests", dependencies: ["SLMTestSupport", "SLMProtocol", "SLMLimits"]),
    ],
    swiftLanguageModes: [.v6]
)
