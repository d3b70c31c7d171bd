import Foundation
import SLMEngine
import SLMKernels
import SLMModel
@testable import SLMServer
import XCTest

final class ConfigTests: XCTestCase {
    static var shippedConfig: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("etc/slmd.conf")
    }

    /// The shipped file parses, and sets every key the parser knows (documented line by line).
    func testShippedConfigParsesAndCoversEveryKey() throws {
        let text = try String(contentsOf: Self.shippedConfig, encoding: .utf8)
        var c = DaemonConfig()
        try c.apply(configText: text, source: "etc/slmd.conf")
        XCTAssertNil(c.problem())
        XCTAssertEqual(c.engine.memoryBudgetBytes, 256 << 20)
        XCTAssertEqual(c.socketMode, 0o660)
        XCTAssertEqual(c.kernels, .auto)
        let keys = text.split(separator: "\n").compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            guard !t.hasPrefix("#"), let eq = t.firstIndex(of: "=") else { return nil }
            return t[..<eq].trimmingCharacters(in: .whitespaces)
        }
        for key in ["model", "socket", "socket_mode", "socket_group", "allowed_uids", "allowed_gids", "threads",
                    "max_sequences", "max_queued", "memory_budget", "max_context", "max_tokens", "default_deadline_ms",
                    "prefill_chunk", "prefix_cache_entries", "max_frame", "max_connections", "max_connections_per_uid", "max_inflight_per_connection", "max_output_buffer",
                    "prefetch", "weights_layout", "repack_cache_dir", "kernels", "warm_up", "log_level", "shutdown_grace_ms", "status_interval_ms"] {
            XCTAssertTrue(keys.contains(key), "etc/slmd.conf does not document \(key)")
        }
    }

    func testErrorsNameFileLineAndKey() {
        var c = DaemonConfig()
        XCTAssertThrowsError(try c.apply(configText: "threads = 2\nmax_sequnces = 4\n", source: "x.conf")) {
            XCTAssertEqual("\($0)", "x.conf:2: unknown key 'max_sequnces'")
        }
        XCTAssertThrowsError(try c.apply(configText: "memory_budget = lots", source: "x.conf")) {
            XCTAssertTrue("\($0)".contains("x.conf:1: memory_budget"), "\($0)")
        }
        XCTAssertThrowsError(try c.apply(configText: "socket_mode = 999", source: "x.conf"))
        XCTAssertThrowsError(try c.apply(configText: "just words", source: "x.conf"))
        XCTAssertNoThrow(try c.apply(configText: "# comment\n\n  max_frame = 64K  # inline\n", source: "x.conf"))
        XCTAssertEqual(c.maxFrameBytes, 65536)
        XCTAssertEqual(parseSize("1G"), 1 << 30)
        XCTAssertNil(parseSize("12X"))
    }

    /// --check-config accepted all three of these.
    func testDuplicateKeysMissingGroupsAndContextsPastTheModelAreRefused() throws {
        var c = DaemonConfig()
        XCTAssertThrowsError(try c.apply(configText: "threads = 2\n# x\nthreads = 3\n", source: "x.conf")) {
            XCTAssertEqual("\($0)", "x.conf:3: 'threads' is already set on line 1")
        }
        var g = DaemonConfig()
        try g.set("socket_group", "nosuchgroup-slmd-test")
        XCTAssertNil(g.problem())
        XCTAssertEqual(g.systemProblem(), "socket_group: no group 'nosuchgroup-slmd-test' exists on this system")
        try g.set("socket_group", "root")
        XCTAssertNil(g.systemProblem())
        var e = EngineConfig()
        e.maxContext = 1_000_000
        let model = ModelConfig(embeddingLength: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, feedForwardLength: 128,
                                vocabSize: 300, trainedContextLength: 8192)
        XCTAssertEqual(e.problem(modelConfig: model), "max_context 1000000 is above the model's trained context length 8192")
    }

    /// `kernels` takes auto or a path name; a path this CPU cannot run passes parsing (the
    /// file may be shared between boards) but is refused at start, naming the paths it can.
    func testKernelsKeyParsesAndAnUnsupportedPathIsAClearError() throws {
        for choice in KernelChoice.allCases {
            var c = DaemonConfig()
            try c.apply(configText: "kernels = \(choice.rawValue)\n", source: "x.conf")
            XCTAssertEqual(c.kernels, choice)
            XCTAssertNil(c.problem())
        }
        var c = DaemonConfig()
        XCTAssertThrowsError(try c.apply(configText: "kernels = sse2\n", source: "x.conf")) {
            XCTAssertEqual("\($0)", "x.conf:1: kernels: expected one of auto, avx512vnni, avx2, neon-dotprod, neon, portable, got 'sse2'")
        }
        XCTAssertThrowsError(try c.set("kernels", "NEON"))  // names are exact
        XCTAssertTrue(KernelChoice.supported.contains(.auto) && KernelChoice.supported.contains(.portable))
        try c.set("kernels", "portable")
        XCTAssertNil(c.systemProblem())
        // Every architecture lacks the other's paths, so one choice is always unsupported.
        let unsupported = try XCTUnwrap(KernelChoice.allCases.first { !$0.isSupported })
        try c.set("kernels", unsupported.rawValue)
        let supported = KernelChoice.supported.map(\.rawValue).joined(separator: ", ")
        XCTAssertEqual(c.systemProblem(), "kernels '\(unsupported.rawValue)' cannot run on this CPU; it supports \(supported)")
        XCTAssertThrowsError(try Kernels.use(unsupported)) { XCTAssertEqual("\($0)", c.systemProblem()) }
        XCTAssertNoThrow(try Kernels.use(.auto))
    }

    /// A file saved with CRLF line ends was read as one line (found by make fuzz).
    func testCRLFLineEndsAreLineEnds() throws {
        var c = DaemonConfig()
        try c.apply(configText: "model = /m.gguf\r\nthreads = 2\r\nmax_sequences = 8\r\n", source: "crlf.conf")
        XCTAssertEqual(c.model, "/m.gguf")
        XCTAssertEqual(c.threadsSetting, 2)
        XCTAssertEqual(c.engine.maxSequences, 8)
        XCTAssertThrowsError(try DaemonConfig().applying("threads = 2\r\nbogus = 1\r\n")) {
            XCTAssertEqual("\($0)", "x.conf:2: unknown key 'bogus'")
        }
    }
}

private extension DaemonConfig {
    func applying(_ text: String) throws -> DaemonConfig {
        var c = self
        try c.apply(configText: text, source: "x.conf")
        return c
    }
}
