import CSystemd
import Glibc

/// The process at the other end of a connected AF_UNIX socket, as the kernel recorded it at
/// `connect()`/`socketpair()` time (`SO_PEERCRED`). The server matches `uid`/`gid` against its
/// allow-lists; `pid` is for logging only (it may be reused once the peer exits).
public struct PeerCredentials: Hashable, Sendable, CustomStringConvertible {
    public let pid: pid_t
    public let uid: uid_t
    public let gid: gid_t

    public init(pid: pid_t, uid: uid_t, gid: gid_t) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// `getsockopt(fd, SOL_SOCKET, SO_PEERCRED)`.
    public static func of(fd: Int32) throws(PeerCredentialsError) -> PeerCredentials {
        var raw = slmd_peer_credentials()
        let rc = slmd_get_peer_credentials(fd, &raw)
        guard rc == 0 else { throw PeerCredentialsError(fd: fd, errno: -rc) }
        return PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid)
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
