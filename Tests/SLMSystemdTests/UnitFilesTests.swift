import Foundation  // tests only: Process to run the script
import XCTest

/// Runs scripts/verify-units (systemd-analyze verify with no stderr + security exposure
/// threshold) so a unit-file regression fails `swift test`.
final class UnitFilesTests: XCTestCase {
    private var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath)  // Tests/SLMSystemdTests/UnitFilesTests.swift
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func testVerifyUnitsScriptPasses() throws {
        let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        guard analyze.contains(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return XCTFail("systemd-analyze is not installed: cannot verify systemd/slmd.{socket,service} "
                + "(Debian: apt-get install systemd)")
        }
        let script = repositoryRoot.appendingPathComponent("scripts/verify-units")
        let process = Process()
        process.executableURL = script
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "scripts/verify-units failed:\n\(text)")
        XCTAssertTrue(text.contains("Overall exposure level for slmd.service"), text)
    }

    func testSocketListensOutsideAnyRuntimeDirectory() throws {
        let socketUnit = try String(contentsOf: repositoryRoot.appendingPathComponent("systemd/slmd.socket"),
                                    encoding: .utf8)
        let service = try String(contentsOf: repositoryRoot.appendingPathComponent("systemd/slmd.service"),
                                 encoding: .utf8)
        XCTAssertTrue(socketUnit.contains("\nListenStream=/run/slmd.sock\n"))
        // systemd deletes RuntimeDirectory= on stop/restart, taking a socket inside it along.
        let runtimeDirs = service.split(separator: "\n").filter { $0.hasPrefix("RuntimeDirectory=") }
        for line in runtimeDirs {
            let dir = line.dropFirst("RuntimeDirectory=".count)
            XCTAssertFalse(socketUnit.contains("/run/\(dir)/"), "socket inside RuntimeDirectory=\(dir)")
        }
        // libdispatch needs setpriority (@resources): it must not be filtered out.
        let filters = service.split(separator: "\n").filter { $0.hasPrefix("SystemCallFilter=") }
        XCTAssertEqual(filters.first, "SystemCallFilter=@system-service")
        XCTAssertFalse(filters.contains { $0.contains("@resources") || $0.contains("setpriority") }, "\(filters)")
        XCTAssertFalse(service.contains("\nPrivateUsers=yes"), "SO_PEERCRED uids would be unmapped")
    }
}
