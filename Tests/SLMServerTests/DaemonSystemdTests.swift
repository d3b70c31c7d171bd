import Foundation
import SLMProtocol
import SLMTestSupport
import XCTest

/// systemd integration without systemd as PID 1: a datagram socket stands in for the
/// notify socket, systemd-socket-activate for the socket unit.
final class DaemonSystemdTests: XCTestCase {
    /// Binds a datagram socket and collects what arrives on it.
    final class NotifyListener {
        let path: String
        let fd: Int32
        init(dir: URL) {
            path = dir.appendingPathComponent("notify").path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in Array(path.utf8).enumerated() { raw[i] = b }
            }
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            var tv = timeval(tv_sec: 0, tv_usec: 100_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        deinit { close(fd) }

        var received: [String] = []
        /// Reads datagrams until one contains `needle` or `timeout` passes.
        @discardableResult
        func waitFor(_ needle: String, timeout: Double = 30) -> Bool {
            let end = Date(timeIntervalSinceNow: timeout)
            if received.contains(where: { $0.contains(needle) }) { return true }
            var buf = [UInt8](repeating: 0, count: 4096)
            while Date() < end {
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 {
                    let msg = String(decoding: buf[0..<n], as: UTF8.self)
                    received.append(msg)
                    if msg.contains(needle) { return true }
                }
            }
            return false
        }
    }

    func testNotifyReadyStatusWatchdogStopping() throws {
        let dir = E2E.tempDir()
        let notify = NotifyListener(dir: dir)
        let d = try Daemon(settings: ["status_interval_ms=200"],
                           environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        XCTAssertTrue(notify.waitFor("READY=1"), "\(notify.received)")
        // READY only once the socket is listening.
        XCTAssertNoThrow(try Client(path: d.socket))
        XCTAssertTrue(notify.waitFor("STATUS="), "\(notify.received)")
        XCTAssertTrue(notify.waitFor("WATCHDOG=1"), "\(notify.received)")
        kill(d.pid, SIGTERM)
        XCTAssertTrue(notify.waitFor("STOPPING=1"), "\(notify.received)")
        XCTAssertEqual(d.terminate(), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.socket), "the socket file slmd created is removed")
    }

    /// WATCHDOG=1 came from the engine thread alone, so a stalled I/O loop (every client
    /// frozen) kept the watchdog happy. Now the pings need both loops alive.
    func testWatchdogPingsStopWhenEitherLoopHangs() throws {
        for fault in ["hang-io", "hang"] {
            let dir = E2E.tempDir()
            let notify = NotifyListener(dir: dir)
            let d = try Daemon(environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000", "SLMD_TEST_FAULT": fault])
            XCTAssertTrue(notify.waitFor("WATCHDOG=1"), "\(fault): pings while healthy: \(notify.received)")
            let c = try Client(path: d.socket)
            c.send(Request(id: .int(1), .complete(CompleteRequest(prompt: "Hello", options: GenerationOptions(maxTokens: 4)))))
            usleep(1_000_000)  // the fault has struck; pings at most 2 × 0.2 s after it
            notify.waitFor("(drain what was sent before)", timeout: 0.3)
            notify.received.removeAll()
            XCTAssertFalse(notify.waitFor("WATCHDOG=1", timeout: 1.5), "\(fault): the watchdog must starve: \(notify.received)")
            kill(d.pid, SIGKILL)
        }
    }

    func testSocketActivation() throws {
        let tool = "/usr/bin/systemd-socket-activate"
        guard FileManager.default.isExecutableFile(atPath: tool) else {
            return XCTFail("\(tool) is missing: apt-get install systemd")
        }
        let dir = E2E.tempDir()
        let notify = NotifyListener(dir: dir)
        let path = dir.appendingPathComponent("act.sock").path
        let d = try Daemon(environment: ["NOTIFY_SOCKET": notify.path], launcher: [tool, "-l", path, "-E", "NOTIFY_SOCKET"],
                           waitReady: false)
        // systemd-socket-activate binds the path, then listens, then starts slmd on the first
        // connection. The path exists from bind() on, so a connect right after it appears can
        // still be refused (ECONNREFUSED) until listen(): retry until then (seen once in CI).
        let end = Date(timeIntervalSinceNow: 10)
        while !FileManager.default.fileExists(atPath: path) && Date() < end { usleep(10_000) }
        var client: Client?
        while client == nil {
            do { client = try Client(path: path) } catch where Date() < end { usleep(10_000) }
        }
        let c = client!
        XCTAssertEqual(c.request(.ping)?.reply, .ping)
        XCTAssertTrue(notify.waitFor("READY=1"))
        kill(d.pid, SIGTERM)
        XCTAssertEqual(d.terminate(), 0)
    }

    func testPeerAllowListRefusesOtherUsers() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
              FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            return XCTFail("needs root, setpriv (util-linux) and /usr/bin/python3 to connect as another user")
        }
        let d = try Daemon(settings: ["allowed_uids=4242", "socket_mode=0666"])
        // A client running as nobody gets a permission_denied error frame.
        let script = """
        import socket,struct,sys
        s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); h=s.recv(12); n=struct.unpack('>I',h[8:12])[0]
        p=b''
        while len(p)<n: p+=s.recv(n-len(p))
        print(p.decode())
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, d.socket]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(text.contains("permission_denied"), text)
        // Root (the test) is still served.
        XCTAssertEqual(try Client(path: d.socket).request(.ping)?.reply, .ping)
    }
}
