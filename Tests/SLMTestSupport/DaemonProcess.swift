import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A real `slmd serve` on a private socket in a temporary directory, for end-to-end tests:
/// the one launcher every test target uses. The daemon is terminated and its directory
/// removed when the object goes away.
public final class DaemonProcess {
    public let process = Process()
    /// The temporary directory holding the socket (and whatever else the test puts there).
    public let dir: URL
    public let socket: String
    public let stderrPipe = Pipe()

    /// Starts `slmd serve --socket <dir>/s.sock --model <model> --threads 2` with
    /// `warm_up=false` and `prefetch=false` (a test wants its answers, not a warm cache),
    /// then `settings` as `--set` overrides and
    /// `extraArgs`. systemd's variables are removed from the environment so a test run under
    /// a service manager is not mistaken for socket activation; `environment` adds variables.
    /// `launcher` runs the daemon through another program (e.g. `systemd-run`). With
    /// `isolatedConfig` an empty config file is passed, so the machine's /etc/slmd/slmd.conf
    /// cannot change the defaults. A missing model or binary is a test failure.
    public init(settings: [String] = [], extraArgs: [String] = [], environment: [String: String] = [:],
                launcher: [String]? = nil, waitReady: Bool = true, model: String = TestModel.path,
                isolatedConfig: Bool = false, dirPrefix: String = "slmd-e2e",
                file: StaticString = #filePath, line: UInt = #line) throws {
        guard FileManager.default.fileExists(atPath: model) else {
            XCTFail("model file not found at \(model): run scripts/fetch-model (or set SLMD_MODEL)", file: file, line: line)
            throw TestModel.Missing(description: "model file not found at \(model)")
        }
        let slmd = TestPaths.slmd
        guard FileManager.default.isExecutableFile(atPath: slmd) else {
            let text = "slmd binary not found at \(slmd): swift build -c release --build-tests -Xswiftc -enable-testing"
            XCTFail(text, file: file, line: line)
            throw TestModel.Missing(description: text)
        }
        dir = TempDir.make(dirPrefix)
        socket = dir.appendingPathComponent("s.sock").path
        var args = ["serve", "--socket", socket, "--model", model, "--threads", "2"]
        if isolatedConfig {
            let config = dir.appendingPathComponent("slmd.conf").path
            _ = FileManager.default.createFile(atPath: config, contents: Data("# defaults\n".utf8))
            args += ["--config", config]
        }
        for s in ["warm_up=false", "prefetch=false"] + settings { args += ["--set", s] }
        args += extraArgs
        if let launcher {
            process.executableURL = URL(fileURLWithPath: launcher[0])
            process.arguments = Array(launcher.dropFirst()) + [slmd] + args
        } else {
            process.executableURL = URL(fileURLWithPath: slmd)
            process.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        for k in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "INVOCATION_ID", "JOURNAL_STREAM"] { env[k] = nil }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        if waitReady { try waitForSocket() }
    }

    /// Waits until the socket accepts a connection; throws if the daemon exits first or
    /// `timeout` seconds pass.
    public func waitForSocket(timeout: Double = 30) throws {
        let end = Date(timeIntervalSinceNow: timeout)
        while Date() < end {
            if Self.canConnect(socket) { return }
            guard process.isRunning else { throw Failed(description: "slmd exited: \(stderrText())") }
            usleep(20_000)
        }
        throw Failed(description: "slmd did not listen on \(socket)")
    }

    /// Why the daemon did not come up.
    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    /// Whether a Unix stream socket at `path` accepts a connection (closed at once).
    public static func canConnect(_ path: String) -> Bool {
        let fd = connectUnix(path)
        guard fd >= 0 else { return false }
        Glibc.close(fd)
        return true
    }

    /// A connected Unix stream socket to `path`, or -1 with `errno` set (the test clients'
    /// one way to connect).
    public static func connectUnix(_ path: String) -> Int32 {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in Array(path.utf8).prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            errno = e
            return -1
        }
        return fd
    }

    public var pid: Int32 { process.processIdentifier }

    /// Threads of the daemon, from /proc; -1 when it cannot be read.
    public func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count) ?? -1
    }

    /// Everything the daemon wrote to stderr, once it has exited ("" while it runs).
    public func stderrText() -> String {
        if process.isRunning { return "" }
        return String(decoding: stderrPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    /// Waits up to `timeout` seconds for the process to exit on its own; true if it did.
    public func waitForExit(timeout: Double) -> Bool {
        let end = Date(timeIntervalSinceNow: timeout)
        while process.isRunning && Date() < end { usleep(10_000) }
        return !process.isRunning
    }

    /// SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status.
    @discardableResult
    public func terminate(timeout: Double = 20) -> Int32 {
        if process.isRunning {
            kill(pid, SIGTERM)
            let end = Date(timeIntervalSinceNow: timeout)
            while process.isRunning && Date() < end { usleep(10_000) }
            if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() }
        }
        return process.terminationStatus
    }

    deinit {
        terminate()
        try? FileManager.default.removeItem(at: dir)
    }
}
