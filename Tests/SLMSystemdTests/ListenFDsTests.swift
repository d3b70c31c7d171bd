import Glibc
import XCTest
@testable import SLMSystemd
import SLMTestSupport

/// Socket activation in-process: put a socket at fd 3 (SD_LISTEN_FDS_START), set LISTEN_PID to
/// our pid and LISTEN_FDS=1, exactly as systemd would. Whatever the test runner had at fd 3 is
/// parked on a high fd and put back, with its FD_CLOEXEC flag, afterwards.
final class ListenFDsTests: XCTestCase {
    private var cleanup: [() -> Void] = []

    override func tearDown() {
        for step in cleanup.reversed() { step() }
        cleanup = []
        super.tearDown()
    }

    /// Moves `fd` to 3 for the duration of the test (closing `fd` itself).
    private func installAtFD3(_ fd: Int32) {
        let savedFlags = fcntl(3, F_GETFD)
        let parked = savedFlags >= 0 ? fcntl(3, F_DUPFD_CLOEXEC, 100) : -1
        XCTAssertTrue(savedFlags < 0 || parked >= 0, "could not park fd 3: errno \(errno)")
        XCTAssertEqual(dup2(fd, 3), 3)
        close(fd)
        cleanup.append {
            if parked >= 0 {
                dup2(parked, 3)
                _ = fcntl(3, F_SETFD, savedFlags)
                close(parked)
            } else {
                close(3)
            }
        }
    }

    private func activationEnvironment(fds: Int, pid: pid_t = getpid()) -> [String: String?] {
        ["LISTEN_PID": "\(pid)", "LISTEN_FDS": "\(fds)", "LISTEN_FDNAMES": nil]
    }

    private func makeUnixListener() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw XCTSkip("socket(AF_UNIX): errno \(errno)") }
        let path = TempDir.socketPath("listen")
        XCTAssertEqual(bindUnix(fd, path: path), 0)
        XCTAssertEqual(listen(fd, 8), 0)
        cleanup.append { unlink(path) }
        return fd
    }

    func testFindsListeningUnixStreamSocketAtFD3() throws {
        installAtFD3(try makeUnixListener())
        try withEnvironment(activationEnvironment(fds: 1)) {
            XCTAssertEqual(try ListenFDs.take(), [3])
            // take() unsets LISTEN_*: nothing is passed on, a second take finds nothing.
            XCTAssertNil(getenv("LISTEN_FDS"))
            XCTAssertNil(getenv("LISTEN_PID"))
            XCTAssertEqual(try ListenFDs.take(), [])
            // and marks the fd close-on-exec.
            XCTAssertEqual(fcntl(3, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC)
            XCTAssertEqual(try ListenFDs.firstUnixStreamListener(in: [3]), 3)
        }
        try withEnvironment(activationEnvironment(fds: 1)) {
            XCTAssertEqual(try ListenFDs.takeUnixStreamListener(), 3)
        }
    }

    func testUDPSocketIsATypedError() throws {
        let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard udp >= 0 else { throw XCTSkip("socket(AF_INET, SOCK_DGRAM): errno \(errno)") }
        installAtFD3(udp)
        try withEnvironment(activationEnvironment(fds: 1)) {
            XCTAssertThrowsError(try ListenFDs.takeUnixStreamListener()) { error in
                guard let e = error as? SocketActivationError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.code, .noUnixStreamListener)
                XCTAssertEqual(e.fds, [3])
                XCTAssertEqual(e.detail, "fd 3: AF_INET SOCK_DGRAM not listening")
                XCTAssertEqual("\(e)", "socket activation: no listening AF_UNIX stream socket among "
                    + "the passed fds: fd 3: AF_INET SOCK_DGRAM not listening")
            }
        }
    }

    func testUnixStreamSocketThatIsNotListeningIsRejected() throws {
        var pair: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        cleanup.append { close(pair[1]) }
        installAtFD3(pair[0])
        XCTAssertThrowsError(try ListenFDs.firstUnixStreamListener(in: [3])) { error in
            XCTAssertEqual((error as? SocketActivationError)?.detail, "fd 3: AF_UNIX SOCK_STREAM not listening")
        }
    }

    func testClosedFDIsATypedError() {
        // An fd number far above anything the runner opens.
        XCTAssertThrowsError(try ListenFDs.firstUnixStreamListener(in: [900])) { error in
            let e = error as? SocketActivationError
            XCTAssertEqual(e?.code, .notASocket)
            XCTAssertEqual(e?.errno, EBADF)
        }
    }

    func testNotSocketActivated() throws {
        try withEnvironment(["LISTEN_PID": nil, "LISTEN_FDS": nil]) {
            XCTAssertEqual(try ListenFDs.take(), [])
            XCTAssertNil(try ListenFDs.takeUnixStreamListener())
        }
        // Meant for another process (e.g. inherited from a parent): ignored.
        try withEnvironment(activationEnvironment(fds: 1, pid: getpid() + 1)) {
            XCTAssertEqual(try ListenFDs.take(), [])
        }
    }

    func testMalformedEnvironmentIsATypedError() throws {
        try withEnvironment(["LISTEN_PID": "\(getpid())", "LISTEN_FDS": "three"]) {
            XCTAssertThrowsError(try ListenFDs.take()) { error in
                XCTAssertEqual((error as? SocketActivationError)?.code, .invalidEnvironment)
            }
        }
    }
}
