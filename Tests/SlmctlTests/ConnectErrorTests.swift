import Foundation
import Glibc
import XCTest

/// Exit 3 and 4 with the messages a user needs when the daemon is not there or the
/// socket is not theirs.
final class ConnectErrorTests: XCTestCase {
    override func tearDown() { FakeServer.stopAll() }

    static let notRunning = "slmd is not running: no socket at"
    static let advice = "(start it with `systemctl start slmd.socket` or `slmd serve --socket PATH`; set SLMD_SOCKET or --socket to use another path)"

    func testMissingSocketFromEnvironment() throws {
        let r = try Slmctl.run(["ping"], env: ["SLMD_SOCKET": "/tmp/slmctl-no-such-dir/slmd.sock"])
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.stderr, "slmctl: \(Self.notRunning) /tmp/slmctl-no-such-dir/slmd.sock \(Self.advice)\n")
        XCTAssertEqual(r.stdout, "")
    }

    func testSocketOptionOverridesEnvironment() throws {
        let r = try Slmctl.run(["complete", "--socket", "/tmp/slmctl-opt.sock", "hi"], env: ["SLMD_SOCKET": "/tmp/slmctl-env.sock"])
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stderr.contains("no socket at /tmp/slmctl-opt.sock "), r.stderr)
    }

    func testDefaultSocketPath() throws {
        try XCTSkipIf(FileManager.default.fileExists(atPath: "/run/slmd.sock"), "a daemon is installed at /run/slmd.sock")
        let r = try Slmctl.run(["status"], env: ["SLMD_SOCKET": nil])
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stderr.contains("\(Self.notRunning) /run/slmd.sock \(Self.advice)"), r.stderr)
        // An empty SLMD_SOCKET is the same as unset.
        let e = try Slmctl.run(["status"], env: ["SLMD_SOCKET": ""])
        XCTAssertTrue(e.stderr.contains("/run/slmd.sock"), e.stderr)
    }

    func testStaleSocketRefusesConnections() throws {
        let server = try FakeServer()
        server.stop()  // closes the listener
        // Recreate the file without a listener: bind, never listen.
        _ = mkdir(server.directory, 0o700)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd); unlink(server.socketPath); rmdir(server.directory) }
        bindUnix(fd, server.socketPath)
        let r = try Slmctl.run(["ping", "--socket", server.socketPath])
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stderr.contains("refuses connections"), r.stderr)
    }

    func testNotASocket() throws {
        let path = NSTemporaryDirectory() + "slmctl-plain-\(getpid())"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data()))
        defer { unlink(path) }
        let r = try Slmctl.run(["ping", "--socket", path])
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stderr.contains("cannot connect to slmd: \(path) is not a socket"), r.stderr)
    }

    /// A socket with mode 0000, connected to by an unprivileged user (tests run as root,
    /// which bypasses the mode, so the client runs under setpriv as nobody).
    func testPermissionDeniedExit4() throws {
        let setpriv = "/usr/bin/setpriv"
        guard FileManager.default.isExecutableFile(atPath: setpriv), getuid() == 0 else {
            throw XCTSkip("needs root and setpriv to run slmctl as another user")
        }
        let server = try FakeServer()
        defer { server.stop() }
        chmod(server.directory, 0o755)
        chmod(server.socketPath, 0)
        let r = try Slmctl.run(["ping", "--socket", server.socketPath],
                               prefix: [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])
        XCTAssertEqual(r.status, 4, r.stderr)
        XCTAssertEqual(r.stderr, "slmctl: permission denied on \(server.socketPath): add your user to the 'slmd' group "
                       + "(sudo usermod -aG slmd $USER) and log in again\n")
        // Root can still connect: the fake server answers.
        chmod(server.socketPath, 0o660)
        XCTAssertEqual(try Slmctl.run(["ping", "-q", "--socket", server.socketPath]).status, 0)
    }
}

func bindUnix(_ fd: Int32, _ path: String) {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        let bytes = Array(path.utf8)
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
