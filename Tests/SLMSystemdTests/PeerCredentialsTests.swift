import Glibc
import XCTest
@testable import SLMSystemd

final class PeerCredentialsTests: XCTestCase {
    func testSocketPairPeerIsThisProcess() throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        for fd in fds {
            let creds = try PeerCredentials.of(fd: fd)
            XCTAssertEqual(creds, PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid()))
        }
    }

    func testNonSocketIsATypedError() {
        var pipeFDs: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&pipeFDs), 0)
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        XCTAssertThrowsError(try PeerCredentials.of(fd: pipeFDs[0])) { error in
            XCTAssertEqual(error as? PeerCredentialsError, PeerCredentialsError(fd: pipeFDs[0], errno: ENOTSOCK))
            XCTAssertTrue("\(error)".contains("SO_PEERCRED on fd \(pipeFDs[0])"), "\(error)")
        }
    }
}
