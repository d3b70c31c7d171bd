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
            XCTAssertEqual([creds.pid, pid_t(creds.uid), pid_t(creds.gid)], [getpid(), pid_t(getuid()), pid_t(getgid())])
            XCTAssertEqual(Set(creds.groups), Set(Self.supplementaryGroups()), "SO_PEERGROUPS")
        }
    }

    /// This process's supplementary groups, as getgroups(2) reports them.
    static func supplementaryGroups() -> [gid_t] {
        let n = getgroups(0, nil)
        var groups = [gid_t](repeating: 0, count: Int(max(n, 0)))
        let got = getgroups(n, &groups)
        return Array(groups.prefix(Int(max(got, 0))))
    }

    /// A peer whose slmd group is only supplementary (what `usermod -aG slmd USER` gives)
    /// is a member: the daemon used to check the primary gid alone.
    func testSupplementaryGroupIsMembership() {
        let peer = PeerCredentials(pid: 1, uid: 1000, gid: 1000, groups: [1000, 27, 995])
        XCTAssertTrue(peer.isMember(of: 995))
        XCTAssertTrue(peer.isMember(of: 1000))
        XCTAssertFalse(peer.isMember(of: 996))
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
