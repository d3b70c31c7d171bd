import Foundation
import SLMProtocol
import SLMTestSupport
import XCTest

/// The served model file changing under the daemon (an upgrade), and crashes: the daemon
/// died with SIGBUS when the file was overwritten in place, and a crash could hang in the
/// runtime's crash reporter for minutes with the socket still bound.
final class DaemonModelFileTests: XCTestCase {
    func copyOfModel(in dir: URL, name: String = "model.gguf") throws -> String {
        let path = dir.appendingPathComponent(name).path
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: E2E.model, toPath: path)
        return path
    }

    /// Replaced by rename (how packages and `install` upgrade a file): what runs finishes,
    /// then slmd exits 75 so systemd restarts it on the new file.
    func testModelReplacedByRenameDrainsThenExitsForARestart() throws {
        try E2E.requireModel()
        let dir = E2E.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try copyOfModel(in: dir)
        let d = try Daemon(model: model)
        let c = try Client(path: d.socket)
        c.send(Request(id: .int(1), .complete(CompleteRequest(prompt: "Once upon a time", options: GenerationOptions(maxTokens: 60, temperature: 0)))))
        XCTAssertNotNil(c.next(), "the generation started")
        let fresh = try copyOfModel(in: dir, name: "model.gguf.new")
        XCTAssertEqual(rename(fresh, model), 0)
        let final = c.finish(.int(1)).final
        XCTAssertNotNil(final?.generation, "the running request was drained, not dropped: \(String(describing: final?.errorCode))")
        XCTAssertTrue(d.waitForExit(timeout: 30), "slmd exits after draining")
        XCTAssertEqual(d.process.terminationReason, .exit)
        XCTAssertEqual(d.process.terminationStatus, 75)
        XCTAssertTrue(d.stderrText().contains("model file replaced"), d.stderrText())
    }

    /// Overwritten in place (`cp` over it): pages vanish under the map. slmd must exit
    /// promptly, non-zero, naming the file, instead of dying with a bare signal 7.
    func testModelTruncatedInPlaceExitsPromptlyNamingTheFile() throws {
        try E2E.requireModel()
        let dir = E2E.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try copyOfModel(in: dir)
        let d = try Daemon(settings: ["weights_layout=mapped"], model: model)
        let c = try Client(path: d.socket)
        c.send(Request(id: .int(1), .complete(CompleteRequest(prompt: "Once upon a time", options: GenerationOptions(maxTokens: 200, temperature: 0)))))
        XCTAssertNotNil(c.next(), "the generation started")
        XCTAssertEqual(truncate(model, 4096), 0)
        XCTAssertTrue(d.waitForExit(timeout: 20), "slmd exits")
        XCTAssertEqual(d.process.terminationReason, .exit, "an exit status, not a bare signal")
        XCTAssertTrue([74, 75].contains(d.process.terminationStatus), "status \(d.process.terminationStatus)")
        let err = d.stderrText()
        XCTAssertTrue(err.contains(model), err)
        XCTAssertTrue(err.contains("modified in place") || err.contains("SIGBUS"), err)
    }

    /// With the unit's SWIFT_BACKTRACE setting, a trap on the engine thread (other threads
    /// running) ends the process within seconds, so Restart=on-failure fires.
    func testACrashEndsTheProcessPromptly() throws {
        let unit = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("systemd/slmd.service")
        let line = try String(contentsOf: unit, encoding: .utf8).split(separator: "\n")
            .first { $0.hasPrefix("Environment=SWIFT_BACKTRACE=") }
        let setting = try XCTUnwrap(line).dropFirst("Environment=SWIFT_BACKTRACE=".count)
        let d = try Daemon(environment: ["SLMD_TEST_FAULT": "crash", "SWIFT_BACKTRACE": String(setting)])
        let c = try Client(path: d.socket)
        let start = Date()
        c.send(Request(id: .int(1), .complete(CompleteRequest(prompt: "Hello", options: GenerationOptions(maxTokens: 4)))))
        XCTAssertTrue(d.waitForExit(timeout: 10), "a crash ends the process (no hang in a crash reporter)")
        XCTAssertEqual(d.process.terminationReason, .uncaughtSignal)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "seconds from the crash to the exit")
        XCTAssertNil(c.next(), "the client sees the connection end")
    }
}
