import CSystemd
import Glibc

/// Sockets passed by socket activation (`sd_listen_fds(3)`): `LISTEN_PID`, `LISTEN_FDS`,
/// fds numbered from 3.
public enum ListenFDs {
    /// The fds passed to this process, in order; empty when not socket-activated.
    /// The `LISTEN_*` variables are unset afterwards (so a second call returns `[]` and no
    /// child inherits them) and every fd gets `FD_CLOEXEC`.
    public static func take() throws(SocketActivationError) -> [Int32] {
        let n = sd_listen_fds(1)
        if n < 0 {
            throw SocketActivationError(.invalidEnvironment, errno: -n,
                                        detail: "sd_listen_fds: \(String(cString: strerror(-n)))")
        }
        return (0..<n).map { SD_LISTEN_FDS_START + $0 }
    }

    /// The first of `fds` that is a listening AF_UNIX stream socket.
    /// Throws `.noUnixStreamListener` naming what each fd was when none qualifies.
    public static func firstUnixStreamListener(in fds: [Int32]) throws(SocketActivationError) -> Int32 {
        for fd in fds {
            let rc = sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, nil, 0)
            if rc > 0 { return fd }
            if rc < 0 {
                throw SocketActivationError(.notASocket, fds: fds, errno: -rc,
                                            detail: "fd \(fd): \(String(cString: strerror(-rc)))")
            }
        }
        throw SocketActivationError(.noUnixStreamListener, fds: fds,
                                    detail: fds.map(describe).joined(separator: "; "))
    }

    /// `take()` then `firstUnixStreamListener(in:)`; nil when the process was not socket-activated.
    /// Other passed fds are left open (the daemon passes one socket; a stray fd is harmless).
    public static func takeUnixStreamListener() throws(SocketActivationError) -> Int32? {
        let fds = try take()
        if fds.isEmpty { return nil }
        return try firstUnixStreamListener(in: fds)
    }

    /// "fd 3: AF_INET SOCK_DGRAM" for error messages.
    static func describe(_ fd: Int32) -> String {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &len) == 0 ? value : nil
        }
        guard let type = option(SO_TYPE) else { return "fd \(fd): not a socket (\(String(cString: strerror(errno))))" }
        let domain = option(SO_DOMAIN).map(domainName) ?? "unknown domain"
        let listening = option(SO_ACCEPTCONN) == 1 ? "listening" : "not listening"
        return "fd \(fd): \(domain) \(typeName(type)) \(listening)"
    }

    private static func domainName(_ d: Int32) -> String {
        switch d {
        case AF_UNIX: "AF_UNIX"
        case AF_INET: "AF_INET"
        case AF_INET6: "AF_INET6"
        case AF_NETLINK: "AF_NETLINK"
        default: "family \(d)"
        }
    }

    private static func typeName(_ t: Int32) -> String {
        switch t {
        case Int32(SOCK_STREAM.rawValue): "SOCK_STREAM"
        case Int32(SOCK_DGRAM.rawValue): "SOCK_DGRAM"
        case Int32(SOCK_SEQPACKET.rawValue): "SOCK_SEQPACKET"
        default: "type \(t)"
        }
    }
}

/// Socket activation went wrong. A struct (not an enum) so codes can be added without breaking
/// callers; compare `code` against the static members.
public struct SocketActivationError: Error, Equatable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable { case invalidEnvironment, notASocket, noUnixStreamListener }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// `LISTEN_PID`/`LISTEN_FDS` are malformed (sd_listen_fds failed).
        public static let invalidEnvironment = Code(.invalidEnvironment)
        /// A passed fd could not be inspected (e.g. it is closed).
        public static let notASocket = Code(.notASocket)
        /// Fds were passed but none is a listening AF_UNIX stream socket
        /// (e.g. the socket unit says `ListenDatagram=` or a TCP port).
        public static let noUnixStreamListener = Code(.noUnixStreamListener)

        public var description: String {
            switch base {
            case .invalidEnvironment: "invalid LISTEN_* environment"
            case .notASocket: "passed fd is not a usable socket"
            case .noUnixStreamListener: "no listening AF_UNIX stream socket among the passed fds"
            }
        }
    }

    public let code: Code
    /// The fds that were examined.
    public let fds: [Int32]
    /// The errno behind the failure, when there is one.
    public let errno: Int32?
    /// What was found, e.g. "fd 3: AF_INET SOCK_DGRAM not listening".
    public let detail: String

    init(_ code: Code, fds: [Int32] = [], errno: Int32? = nil, detail: String) {
        self.code = code
        self.fds = fds
        self.errno = errno
        self.detail = detail
    }

    public var description: String { "socket activation: \(code): \(detail)" }
}
