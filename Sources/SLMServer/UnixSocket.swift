#if canImport(Glibc)
import Glibc
#endif

/// Why the listening socket could not be set up; names the path and the system error.
public struct SocketError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ what: String, path: String, errno e: Int32) {
        description = "\(what) \(path): \(String(cString: strerror(e)))"
    }
    init(_ description: String) { self.description = description }
}

/// Thin wrappers over the BSD socket calls for AF_UNIX stream sockets.
enum UnixSocket {
    static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.prefix(raw.count - 1).enumerated() { raw[i] = b }
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    /// Binds and listens on `path`. A stale socket file (nothing accepting on it) is
    /// removed first; a live one, or a path that is not a socket, is an error: slmd never
    /// deletes a file it did not create or steals another daemon's socket.
    static func listen(path: String, mode: UInt32, group: gid_t?, backlog: Int32 = 64) throws(SocketError) -> Int32 {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw SocketError("\(path) exists and is not a socket; refusing to replace it")
            }
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let live = withAddress(path) { connect(probe, $0, $1) } == 0
            close(probe)
            if live { throw SocketError("another process is already serving on \(path)") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError("cannot create a socket for", path: path, errno: errno) }
        // The mode is applied with fchmod-equivalent chmod right after bind; a restrictive
        // umask meanwhile keeps the window closed.
        let old = umask(0o177)
        let rc = withAddress(path) { bind(fd, $0, $1) }
        let bindErrno = errno
        umask(old)
        guard rc == 0 else {
            close(fd)
            throw SocketError("cannot bind", path: path, errno: bindErrno)
        }
        if chmod(path, mode_t(mode)) != 0 {
            let e = errno
            close(fd); unlink(path)
            throw SocketError("cannot set mode \(String(mode, radix: 8)) on", path: path, errno: e)
        }
        if let group, chown(path, uid_t.max, group) != 0 {
            let e = errno
            close(fd); unlink(path)
            throw SocketError("cannot set group \(group) on", path: path, errno: e)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let e = errno
            close(fd); unlink(path)
            throw SocketError("cannot listen on", path: path, errno: e)
        }
        setNonBlocking(fd)
        return fd
    }

    /// Resolves a group name or number.
    static func groupID(_ nameOrNumber: String) -> gid_t? {
        if let n = UInt32(nameOrNumber) { return n }
        guard let g = getgrnam(nameOrNumber) else { return nil }
        return g.pointee.gr_gid
    }
}
