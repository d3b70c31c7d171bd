// A small blocking client for the slmd socket protocol (docs/PROTOCOL.md), built on Glibc
// sockets and SLMProtocol's frame codec. No Foundation, no NIO: one connection is one file
// descriptor, one FrameDecoder and a poll(2) loop that also watches the interrupt pipe, so
// Ctrl-C wakes a blocked read and the caller can send `cancel`.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SLMProtocol

/// Why talking to the daemon failed below the protocol level.
enum ConnectionError: Error {
    /// `connect(2)` failed: errno and the path tried.
    case connect(path: String, errno: Int32)
    /// `socket(2)` or another local call failed.
    case system(call: String, errno: Int32)
    /// The daemon closed the connection (cleanly, or inside a frame).
    case closed(insideFrame: Bool)
    /// No frame arrived within the timeout.
    case timeout(seconds: Double)
    /// The server sent bytes that are not a valid frame, or a frame that does not decode.
    /// `code` is the decoder's error code (`unsupported_version` for frames of another version).
    case protocolViolation(String, code: ErrorCode?)
    /// Ctrl-C while waiting for the answer to a quick request.
    case interrupted
}

/// The terminal frame of a request: its reply or its error.
enum CallResult {
    case reply(Reply)
    case failure(ErrorMessage)
}

/// One client connection to slmd.
final class Connection {
    /// The path connected to, for messages.
    let path: String
    private let fd: Int32
    private var decoder = FrameDecoder()
    private var pending: [ServerMessage] = []
    private var nextID: Int64 = 1
    private var closed = false

    /// Connects to the Unix stream socket at `path`.
    init(path: String) throws(ConnectionError) {
        self.path = path
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw .system(call: "socket", errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard bytes.count < capacity else {
            close(s)
            throw .connect(path: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            close(s)
            throw .connect(path: path, errno: e)
        }
        fd = s
    }

    deinit { if !closed { close(fd) } }

    /// A fresh request id for this connection (integers from 1).
    func makeID() -> RequestID {
        defer { nextID += 1 }
        return .int(nextID)
    }

    /// Sends one request frame.
    func send(_ request: Request) throws(ConnectionError) {
        try write(request.frame().encode())
    }

    /// Writes raw bytes (tests of odd frames use this too).
    func write(_ bytes: [UInt8]) throws(ConnectionError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE || errno == ECONNRESET { throw .closed(insideFrame: false) }
                throw .system(call: "send", errno: errno)
            }
            offset += n
        }
    }

    /// What `receive` returns.
    enum Received {
        case message(ServerMessage)
        /// The user pressed Ctrl-C (the interrupt pipe became readable).
        case interrupted
    }

    /// The next message from the server. Waits at most `timeout` seconds (nil: forever)
    /// for it; returns `.interrupted` on Ctrl-C when `interruptible` is true.
    func receive(timeout: Double?, interruptible: Bool = true) throws(ConnectionError) -> Received {
        let deadline = timeout.map { monotonicSeconds() + $0 }
        while true {
            if !pending.isEmpty { return .message(pending.removeFirst()) }
            if interruptible && Interrupt.pending { return .interrupted }
            if let message = try nextDecoded() {
                pending.append(message)
                continue
            }
            if case .finished = decoder.state { throw .closed(insideFrame: false) }

            var remainingMS: Int32 = -1
            if let deadline {
                let left = deadline - monotonicSeconds()
                if left <= 0 { throw .timeout(seconds: timeout ?? 0) }
                remainingMS = Int32(min(left * 1000, Double(Int32.max - 1)).rounded(.up))
            }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if interruptible { fds.append(pollfd(fd: Interrupt.readFD, events: Int16(POLLIN), revents: 0)) }
            let rc = poll(&fds, nfds_t(fds.count), remainingMS)
            if rc < 0 {
                if errno == EINTR { continue }
                throw .system(call: "poll", errno: errno)
            }
            if rc == 0 { continue }  // the deadline check above throws
            if fds.count > 1 && fds[1].revents != 0 && Interrupt.pending { return .interrupted }
            if fds[0].revents != 0 { try readAvailable() }
        }
    }

    /// The next complete message already received, if any.
    private func nextDecoded() throws(ConnectionError) -> ServerMessage? {
        let frame: Frame?
        do { frame = try decoder.next() } catch {
            throw .protocolViolation("bad frame from the server: \(error.message)", code: error.code)
        }
        guard let frame else { return nil }
        do { return try ServerMessage(frame: frame) } catch {
            throw .protocolViolation("undecodable \(frame.type) frame from the server: \(error.message)", code: error.code)
        }
    }

    /// Reads what the socket has and feeds the decoder; EOF finishes the decoder.
    private func readAvailable() throws(ConnectionError) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EINTR || errno == EAGAIN { return }
            if errno == ECONNRESET { throw .closed(insideFrame: decoder.partialByteCount > 0) }
            throw .system(call: "recv", errno: errno)
        }
        if n == 0 {
            let inside = decoder.partialByteCount > 0
            decoder.finish()
            if inside {
                throw .closed(insideFrame: true)
            }
            // Frames already queued are still delivered; `receive` reports the close after them.
            return
        }
        decoder.feed(buffer[0..<n])
    }

    /// Sends `body` as a new request and waits for its terminal frame, ignoring events of
    /// other ids. Server errors come back as `.failure`, not thrown.
    func call(_ body: RequestBody, timeout: Double?) throws(ConnectionError) -> CallResult {
        let id = makeID()
        try send(Request(id: id, body))
        while true {
            switch try receive(timeout: timeout) {
            case .interrupted:
                throw .interrupted  // nothing worth cancelling: closing the connection is enough
            case .message(let m):
                switch m {
                case .reply(let r) where r.id == id: return .reply(r)
                case .error(let e) where e.id == id || e.id == nil: return .failure(e)
                default: continue
                }
            }
        }
    }

    /// Closes the socket (also cancels the connection's requests on the server).
    func shutdown() {
        if !closed {
            close(fd)
            closed = true
        }
    }

    /// The descriptor, for multiplexing several connections (bench).
    var fileDescriptor: Int32 { fd }

    /// Reads once and returns the messages decoded so far (for callers that poll(2) themselves).
    func drainAfterReadable() throws(ConnectionError) -> [ServerMessage] {
        try readAvailable()
        var out: [ServerMessage] = []
        while let message = try nextDecoded() { out.append(message) }
        if out.isEmpty, case .finished = decoder.state { throw .closed(insideFrame: false) }
        return out
    }
}

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
