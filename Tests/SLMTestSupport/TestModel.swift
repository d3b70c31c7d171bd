import Foundation
import XCTest

/// Where the tests find the real model and the checkout. One lookup for every test target,
/// the same as scripts/fetch-model's: `SLMD_MODEL`, else `SLMD_MODEL_DIR`, else the model
/// cache (`$XDG_CACHE_HOME` or `~/.cache`, then `slmd/models`). The model is too big for git;
/// everything else a test reads is under the package root.
public enum TestModel {
    /// The default model's file name in the cache.
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// The path the real model is expected at (it may not exist).
    public static var path: String {
        if let p = ProcessInfo.processInfo.environment["SLMD_MODEL"], !p.isEmpty { return p }
        return directory + "/" + fileName
    }

    /// The model cache directory (`SLMD_MODEL_DIR`, else `slmd/models` in the cache), where setup
    /// scripts also put the models they derive (scripts/make-toy-models --fetch-kquants).
    public static var directory: String {
        let env = ProcessInfo.processInfo.environment
        let cache = env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.cache")
        return env["SLMD_MODEL_DIR"] ?? cache + "/slmd/models"
    }

    /// What to do when the model is missing.
    public static var missingMessage: String {
        "model file not found at \(path): run scripts/fetch-model (or set SLMD_MODEL to a copy of \(fileName))"
    }

    /// The model's path; a missing model is a test failure with instructions, never a silent
    /// skip (a skipped model test looks exactly like a pass).
    public static func requirePath(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail(missingMessage, file: file, line: line)
            throw Missing(description: missingMessage)
        }
        return path
    }

    /// Thrown by `requirePath` after it has recorded the failure.
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }
}

/// Directories of the checkout and of the built products.
public enum TestPaths {
    /// The package root, found from this file's path so tests work from any cwd.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // SLMTestSupport
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()

    /// `Tests/Fixtures` in the checkout.
    public static var fixtures: URL { packageRoot.appendingPathComponent("Tests/Fixtures") }

    /// Where SwiftPM put the test bundle, and so the `slmd` and `slmctl` binaries it built
    /// beside it (`swift build --build-tests`).
    public static var binDir: URL {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // On Linux the bundle is an executable `slmdPackageTests.xctest`; on Darwin a directory.
        if dir.lastPathComponent == "MacOS" {
            dir = dir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        }
        return dir
    }

    /// The `slmd` binary: `SLMD_BIN`, else the one built beside the tests.
    public static var slmd: String {
        ProcessInfo.processInfo.environment["SLMD_BIN"] ?? binDir.appendingPathComponent("slmd").path
    }
}

/// Temporary directories for sockets and files a test writes.
public enum TempDir {
    /// A new, empty directory under /tmp with a short name: a socket path inside it must fit
    /// `sockaddr_un.sun_path` (107 bytes), which `FileManager.temporaryDirectory` may not.
    public static func make(_ prefix: String = "slmd-test") -> URL {
        let d = URL(fileURLWithPath: "/tmp/\(prefix)-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// A fresh socket path directly in /tmp (nothing created), short enough for `sun_path`.
    public static func socketPath(_ tag: String) -> String {
        "/tmp/slmd-test-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }
}

/// The one seeded generator of the tests (xorshift64*): random inputs that reproduce from the
/// seed printed with a failure. Tests of the sampler use the model's own `SeededRNG` instead,
/// since that is the generator under test.
public struct TestRNG: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A zero seed is replaced by a fixed non-zero one (xorshift stays at zero forever).
    public init(seed: UInt64) { state = seed == 0 ? 0x9e37_79b9_7f4a_7c15 : seed }

    public mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_f491_4f6c_dd1d
    }

    /// Uniform in [0, 1), from the top 24 bits.
    public mutating func nextUnit() -> Float {
        Float(next() >> 40) * (1.0 / Float(1 << 24))
    }
}
