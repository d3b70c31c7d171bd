import CSystemd
import Glibc

/// The process at the other end of a connected AF_UNIX socket, as the kernel recorded it at
/// `connect()`/`socketpair()` time (`SO_PEERCRED`). The server matches `uid`/`gid` against its
/// allow-lists; `pid` is for logging only (it may be reused once the peer exits).
public struct PeerCredentials: Hashable, Sendable, CustomStringConvertible {
    public let pid: pid_t
    public let uid: uid_t
    public let gid: gid_t
    /// Supplementary groups (`SO_PEERGROUPS`), so a user added to a group with
    /// `usermod -aG` is a member although it is not their primary group. Empty when the
    /// kernel could not report them.
    public let groups: [gid_t]

    public init(pid: pid_t, uid: uid_t, gid: gid_t, groups: [gid_t] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// Whether the peer has `gid` as its primary or a supplementary group.
    public func isMember(of gid: gid_t) -> Bool { self.gid == gid || groups.contains(gid) }

    /// Most supplementary groups read (Linux's NGROUPS_MAX is 65536; 1024 covers any real
    /// account, and a peer with more is judged on the first 1024 and its primary group).
    static let maxGroups = 1024

    /// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`.
    public static func of(fd: Int32) throws(PeerCredentialsError) -> PeerCredentials {
        var raw = slmd_peer_credentials()
        let rc = slmd_get_peer_credentials(fd, &raw)
        guard rc == 0 else { throw PeerCredentialsError(fd: fd, errno: -rc) }
        var groups = [gid_t](repeating: 0, count: maxGroups)
        let n = slmd_get_peer_groups(fd, &groups, Int32(maxGroups))
        return PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid, groups: n > 0 ? Array(groups[0..<Int(n)]) : [])
    }

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }
}

/// `SO_PEERCRED` failed on `fd` (not a socket, not AF_UNIX, not connected...).
public struct PeerCredentialsError: Error, Equatable, CustomStringConvertible {
    public let fd: Int32
    public let errno: Int32

    public var description: String {
        "SO_PEERCRED on fd \(fd): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}
