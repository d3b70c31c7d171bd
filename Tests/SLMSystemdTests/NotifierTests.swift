import Glibc
import XCTest
@testable import SLMSystemd
import SLMTestSupport

final class NotifierTests: XCTestCase {
    /// A datagram socket standing in for systemd's notify socket.
    private final class FakeNotifySocket {
        let fd: Int32
        let path: String

        init() throws {
            path = TempDir.socketPath("notify")
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw XCTSkip("socket(AF_UNIX, SOCK_DGRAM): errno \(errno)") }
            guard bindUnix(fd, path: path) == 0 else { throw XCTSkip("bind \(path): errno \(errno)") }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        /// The next datagram as text, or nil after the 2 s timeout.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n >= 0 else { return nil }
            return String(decoding: buffer[0..<n], as: UTF8.self)
        }

        /// True when nothing is queued.
        func isEmpty() -> Bool {
            var byte: UInt8 = 0
            return recv(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_PEEK)) < 0
        }

        deinit {
            close(fd)
            unlink(path)
        }
    }

    func testSendsExactDatagramsToNotifySocket() throws {
        let sock = try FakeNotifySocket()
        withEnvironment(["NOTIFY_SOCKET": sock.path]) {
            let notifier = Notifier()
            XCTAssertTrue(notifier.isEnabled)

            XCTAssertEqual(notifier.ready(), .sent)
            XCTAssertEqual(sock.receive(), "READY=1")

            XCTAssertEqual(notifier.status("loading model tinyllama-q8_0.gguf"), .sent)
            XCTAssertEqual(sock.receive(), "STATUS=loading model tinyllama-q8_0.gguf")

            XCTAssertEqual(notifier.watchdog(), .sent)
            XCTAssertEqual(sock.receive(), "WATCHDOG=1")

            XCTAssertEqual(notifier.stopping(), .sent)
            XCTAssertEqual(sock.receive(), "STOPPING=1")

            XCTAssertEqual(notifier.ready(status: "serving 1 model"), .sent)
            XCTAssertEqual(sock.receive(), "READY=1\nSTATUS=serving 1 model")

            XCTAssertEqual(notifier.mainPID(4242), .sent)
            XCTAssertEqual(sock.receive(), "MAINPID=4242")

            XCTAssertEqual(notifier.extendTimeout(by: .seconds(20)), .sent)
            XCTAssertEqual(sock.receive(), "EXTEND_TIMEOUT_USEC=20000000")
            XCTAssertTrue(sock.isEmpty())
        }
    }

    func testStatusNewlinesBecomeSpaces() throws {
        let sock = try FakeNotifySocket()
        withEnvironment(["NOTIFY_SOCKET": sock.path]) {
            Notifier().status("line one\nREADY=1\r\nend")
            XCTAssertEqual(sock.receive(), "STATUS=line one READY=1 end")
        }
    }

    func testReloadingCarriesMonotonicTimestamp() throws {
        let sock = try FakeNotifySocket()
        try withEnvironment(["NOTIFY_SOCKET": sock.path]) {
            let before = Notifier.monotonicMicroseconds()
            XCTAssertEqual(Notifier().reloading(), .sent)
            let after = Notifier.monotonicMicroseconds()
            let message = try XCTUnwrap(sock.receive())
            let lines = message.split(separator: "\n")
            XCTAssertEqual(lines.count, 2)
            XCTAssertEqual(lines.first, "RELOADING=1")
            let prefix = "MONOTONIC_USEC="
            XCTAssertTrue(lines[1].hasPrefix(prefix), message)
            let usec = try XCTUnwrap(UInt64(lines[1].dropFirst(prefix.count)))
            XCTAssertTrue((before...after).contains(usec), "\(usec) not in \(before)...\(after)")
        }
    }

    func testWithoutNotifySocketEverythingIsANoOp() {
        withEnvironment(["NOTIFY_SOCKET": nil]) {
            let notifier = Notifier()
            XCTAssertFalse(notifier.isEnabled)
            XCTAssertEqual(notifier.ready(), .disabled)
            XCTAssertEqual(notifier.status("x"), .disabled)
            XCTAssertEqual(notifier.watchdog(), .disabled)
            XCTAssertEqual(notifier.stopping(), .disabled)
            XCTAssertEqual(notifier.reloading(), .disabled)
            XCTAssertEqual(notifier.mainPID(getpid()), .disabled)
        }
    }

    func testMissingNotifySocketReportsFailure() {
        withEnvironment(["NOTIFY_SOCKET": TempDir.socketPath("absent")]) {
            XCTAssertEqual(Notifier().ready(), .failed(errno: ENOENT))
        }
    }

    func testWatchdogIntervalForThisProcess() {
        withEnvironment(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid())"]) {
            XCTAssertEqual(Notifier().watchdogInterval, .seconds(30))
            XCTAssertEqual(Notifier().watchdogPingInterval, .seconds(15))
        }
        // No WATCHDOG_PID means "this process"; the variables are left in place.
        withEnvironment(["WATCHDOG_USEC": "2500000", "WATCHDOG_PID": nil]) {
            XCTAssertEqual(Notifier().watchdogInterval, .milliseconds(2500))
            XCTAssertNotNil(getenv("WATCHDOG_USEC"))
        }
    }

    func testWatchdogIntervalForAnotherProcessIsNil() {
        withEnvironment(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(getpid() + 1)"]) {
            XCTAssertNil(Notifier().watchdogInterval)
            XCTAssertNil(Notifier().watchdogPingInterval)
        }
        withEnvironment(["WATCHDOG_USEC": nil, "WATCHDOG_PID": nil]) {
            XCTAssertNil(Notifier().watchdogInterval)
        }
        withEnvironment(["WATCHDOG_USEC": "not-a-number", "WATCHDOG_PID": "\(getpid())"]) {
            XCTAssertNil(Notifier().watchdogInterval)
        }
    }

    func testDurationToMicroseconds() {
        XCTAssertEqual(Notifier.microseconds(.seconds(90)), 90_000_000)
        XCTAssertEqual(Notifier.microseconds(.milliseconds(1500)), 1_500_000)
        XCTAssertEqual(Notifier.microseconds(.seconds(-1)), 0)
    }
}
