import Logging
import SLMEngine
import SLMKernels
import SLMModel
import SLMProtocol
import SLMSystemd
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The socket server: one I/O thread multiplexes the listening socket and every client
/// with poll(2); generation runs on the engine thread, which hands events back through
/// each connection's outbox and a wake-up pipe.
///
/// Bounded everywhere: connections (`max_connections`), requests in flight per
/// connection, frame size (checked from the header before reading the payload), bytes
/// queued for a client that does not read (`max_output_buffer`).
public final class Server: @unchecked Sendable {
    // @unchecked: `connections`, `listenFD` and the counters below are touched by the I/O
    // thread only; `stopRequested` and `stats` are atomics/mutex-protected.
    let config: DaemonConfig
    let engine: any EngineService
    let logger: Logger
    let handler: RequestHandler
    private var listenFD: Int32
    private let ownsSocketPath: Bool
    private var connections: [Int32: Connection] = [:]
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1
    private let stopRequested = Atomic<Bool>(false)
    private let acceptingFlag = Atomic<Bool>(true)
    private var thread: pthread_t?
    private var nextSerial: UInt64 = 1
    private let counters = Mutex(ServerCounters())
    /// Called on the I/O thread every `status_interval_ms` (the daemon updates STATUS=).
    private let onTick: (@Sendable () -> Void)?

    struct ServerCounters {
        var accepted = 0
        var refusedPeers = 0
        var refusedFull = 0
        var evicted = 0
        var protocolErrors = 0
        var open = 0
    }
    /// Monotonic time of the I/O loop's last turn (Double bits), for the watchdog.
    private let loopBeat = Atomic<UInt64>(monotonicSeconds().bitPattern)
    /// Spare descriptor given up to accept (and refuse) a client when the process is out of
    /// descriptors: without it, accept keeps failing with EMFILE, poll keeps reporting the
    /// pending client, and the I/O thread spins.
    private var spareFD: Int32 = -1
    /// While out of descriptors, the listener is not polled until this time.
    private var acceptPausedUntil = 0.0
    private var lastDescriptorWarning = 0.0
    /// Extra descriptor the I/O loop polls for the daemon (the model-file watch), and what
    /// to run when it is readable.
    /// Connections the server closed on its own (fatal error, eviction, refusal), shut down
    /// for writing after their last frame and drained until the client closes or a second
    /// passes. Closing a Unix socket with unread input resets it, and the client may then
    /// lose the error frame that explains the close.
    private var lingering: [Int32: Double] = [:]
    private var extraFD: Int32 = -1
    private var onExtraReadable: (() -> Void)?

    /// Takes over `listenFD` (already listening; from systemd or `UnixSocket.listen`).
    /// `ownsSocketPath` says whether slmd created the socket file and must remove it.
    public init(config: DaemonConfig, engine: any EngineService, listenFD: Int32, ownsSocketPath: Bool, logger: Logger,
                intents: IntentRegistry = IntentRegistry(), onTick: (@Sendable () -> Void)? = nil) throws(SocketError) {
        self.config = config
        self.engine = engine
        self.logger = logger
        self.listenFD = listenFD
        self.ownsSocketPath = ownsSocketPath
        self.onTick = onTick
        UnixSocket.setNonBlocking(listenFD)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SocketError("cannot create the wake-up pipe", path: "", errno: errno) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        UnixSocket.setNonBlocking(wakeRead)
        UnixSocket.setNonBlocking(wakeWrite)
        spareFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        handler = RequestHandler(config: config, engine: engine, intents: intents, logger: logger)
    }

    /// Polls `fd` on the I/O thread and runs `body` there whenever it is readable (call
    /// before `start`). `body` must be quick and must not block.
    public func watch(fd: Int32, _ body: @escaping () -> Void) {
        extraFD = fd
        onExtraReadable = body
    }

    /// Whether the I/O loop turned and no request has been in preparation for longer than
    /// `seconds`. The systemd watchdog is pinged only while this and the engine's heartbeat
    /// hold, so a stalled I/O thread gets the daemon restarted too.
    public func isResponsive(within seconds: Double) -> Bool {
        let now = monotonicSeconds()
        return now - Double(bitPattern: loopBeat.load(ordering: .relaxed)) < seconds
            && handler.preparation.currentItemSeconds < seconds
    }

    /// Binds `config.socket` itself (when not socket-activated).
    public static func bindSocket(config: DaemonConfig) throws(SocketError) -> Int32 {
        var group: gid_t?
        if !config.socketGroup.isEmpty {
            guard let g = UnixSocket.groupID(config.socketGroup) else {
                throw SocketError("socket_group '\(config.socketGroup)' does not exist")
            }
            group = g
        }
        return try UnixSocket.listen(path: config.socket, mode: config.socketMode, group: group)
    }

    public func start() {
        handler.server = self  // before any thread that may read it starts
        handler.preparation.start()
        thread = startThread("I/O") { self.loop() }
    }

    /// Stops accepting new connections (shutdown step 1); existing ones are still served.
    public func stopAccepting() {
        acceptingFlag.store(false, ordering: .releasing)
        wake()
    }

    /// Waits up to `seconds` for every queued reply to reach its client, then closes all
    /// connections and stops the I/O thread.
    public func stop(flushFor seconds: Double) {
        handler.preparation.stop()  // what is still queued is refused by the stopped engine
        let end = monotonicSeconds() + seconds
        while monotonicSeconds() < end {
            if !pendingOutput.load(ordering: .acquiring) { break }
            usleep(5_000)
        }
        stopRequested.store(true, ordering: .releasing)
        wake()
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private let pendingOutput = Atomic<Bool>(false)

    /// Nudges the I/O thread (an engine event is waiting in an outbox).
    func wake() {
        var b: UInt8 = 1
        _ = write(wakeWrite, &b, 1)
    }

    public struct Counters: Sendable {
        public var accepted = 0
        public var refusedPeers = 0
        public var refusedFull = 0
        public var evicted = 0
        public var protocolErrors = 0
        public var open = 0
    }

    public var counterSnapshot: Counters {
        counters.withLock { c in
            Counters(accepted: c.accepted, refusedPeers: c.refusedPeers, refusedFull: c.refusedFull, evicted: c.evicted,
                     protocolErrors: c.protocolErrors, open: c.open)
        }
    }

    // MARK: I/O thread

    private func loop() {
        var pfds: [pollfd] = []
        var order: [Int32] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var lastTick = monotonicSeconds()
        let tickEvery = Double(config.statusIntervalMs) / 1000
        while !stopRequested.load(ordering: .acquiring) {
            loopBeat.store(monotonicSeconds().bitPattern, ordering: .relaxed)
            if !acceptingFlag.load(ordering: .acquiring), listenFD >= 0 {
                closeListener()
            }
            pfds.removeAll(keepingCapacity: true)
            order.removeAll(keepingCapacity: true)
            pfds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            pfds.append(pollfd(fd: extraFD, events: Int16(POLLIN), revents: 0))  // fd -1 is ignored by poll
            // A negative fd is skipped by poll: the listener rests while out of descriptors.
            let listening = listenFD >= 0 && monotonicSeconds() >= acceptPausedUntil
            if listenFD >= 0 { pfds.append(pollfd(fd: listening ? listenFD : -1, events: Int16(POLLIN), revents: 0)) }
            var lingerOrder: [Int32] = []
            for fd in lingering.keys {
                pfds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                lingerOrder.append(fd)
            }
            let connectionBase = pfds.count
            for (fd, c) in connections {
                var ev = c.readClosed ? Int16(0) : Int16(POLLIN)  // POLLHUP/POLLERR come regardless
                if c.hasOutput { ev |= Int16(POLLOUT) }
                pfds.append(pollfd(fd: fd, events: ev, revents: 0))
                order.append(fd)
            }
            // 500 ms at most, so the watchdog beat above stays fresh when nothing happens.
            // A resting listener wakes the loop when its rest ends.
            let timeout = listening || listenFD < 0 ? 500 : Int32(max(1, min(500, (acceptPausedUntil - monotonicSeconds()) * 1000)))
            let n = poll(&pfds, nfds_t(pfds.count), timeout)
            if n < 0 && errno != EINTR {
                logger.error("poll failed", metadata: ["errno": "\(errno)"])
                usleep(10_000)
            }
            // Drain the wake-up pipe.
            while read(wakeRead, &buffer, buffer.count) > 0 {}
            if pfds[1].revents != 0 { onExtraReadable?() }
            if listenFD >= 0, pfds[2].revents & Int16(POLLIN) != 0 { acceptAll() }
            let now0 = monotonicSeconds()
            for (i, fd) in lingerOrder.enumerated() {
                let rev = pfds[connectionBase - lingerOrder.count + i].revents
                var gone = now0 >= lingering[fd]!
                if rev != 0 {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)) { gone = true }
                }
                if gone {
                    lingering[fd] = nil
                    close(fd)
                }
            }
            let base = connectionBase
            for (i, fd) in order.enumerated() {
                guard let c = connections[fd] else { continue }
                let rev = i + base < pfds.count ? pfds[i + base].revents : 0
                if c.readClosed {
                    if rev & Int16(POLLHUP | POLLERR) != 0 { closeConnection(c) }  // gone both ways
                } else if rev & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                    readAvailable(c, &buffer)
                }
            }
            // Flush every outbox (events arrive from the engine between polls).
            var anyPending = false
            for c in Array(connections.values) {
                flush(c)
                let (overflowed, pending) = c.shared.withLock { ($0.overflowed, $0.outbox.count > $0.sent) }
                if overflowed {
                    logger.warning("client stopped reading; closing", metadata: ["conn": "\(c.serial)"])
                    closeConnection(c)
                } else if !pending && (c.closeAfterFlush || (c.readClosed && c.isIdle)) {
                    closeConnection(c, linger: c.closeAfterFlush)
                } else if pending {
                    anyPending = true
                }
            }
            pendingOutput.store(anyPending, ordering: .releasing)
            let now = monotonicSeconds()
            if now - lastTick >= tickEvery {
                lastTick = now
                onTick?()
            }
        }
        for c in Array(connections.values) {
            flush(c)
            closeConnection(c)
        }
        for fd in lingering.keys { close(fd) }
        lingering.removeAll()
        closeListener()
        close(wakeRead)
        close(wakeWrite)
    }

    private func closeListener() {
        guard listenFD >= 0 else { return }
        close(listenFD)
        listenFD = -1
        if ownsSocketPath { unlink(config.socket) }
    }

    private func acceptAll() {
        while true {
            var fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                if errno == EMFILE || errno == ENFILE { fd = refuseForLackOfDescriptors() }
                if fd < 0 { return }  // EAGAIN: nothing more; other errors: try on the next poll
            }
            UnixSocket.setNonBlocking(fd)
            let peer = try? PeerCredentials.of(fd: fd)
            let serial = nextSerial
            nextSerial += 1
            let conn = Connection(fd: fd, peer: peer, serial: serial, maxFrame: config.maxFrameBytes,
                                  maxOutput: config.maxOutputBufferBytes)
            if !isAllowed(peer) {
                counters.withLock { $0.refusedPeers += 1 }
                logger.warning("refused peer not in the allow-list", metadata: [
                    "uid": "\(peer.map { String($0.uid) } ?? "?")", "pid": "\(peer.map { String($0.pid) } ?? "?")"])
                conn.enqueue(ErrorMessage(id: nil, code: .permissionDenied,
                                          message: "uid \(peer.map { String($0.uid) } ?? "?") is not allowed to use slmd").frame())
                flush(conn)
                linger(fd)
                continue
            }
            if let refusal = makeRoom(for: conn.owner) {
                counters.withLock { $0.refusedFull += 1 }
                conn.enqueue(ErrorMessage(id: nil, code: .busy, message: refusal).frame())
                flush(conn)
                linger(fd)
                continue
            }
            connections[fd] = conn
            counters.withLock { $0.accepted += 1; $0.open = connections.count }
            logger.debug("connection accepted", metadata: ["conn": "\(serial)", "uid": "\(peer.map { String($0.uid) } ?? "?")"])
        }
    }

    /// Out of descriptors: gives up the spare one to accept the waiting client, tells it
    /// `busy` and closes it, then rests the listener briefly. Returns -1 (nothing to serve).
    private func refuseForLackOfDescriptors() -> Int32 {
        let now = monotonicSeconds()
        acceptPausedUntil = now + 0.1
        if now - lastDescriptorWarning > 10 {
            lastDescriptorWarning = now
            logger.warning("out of file descriptors; refusing new connections", metadata: ["open": "\(connections.count)"])
        }
        guard spareFD >= 0 else { return -1 }
        close(spareFD)
        let fd = accept(listenFD, nil, nil)
        if fd >= 0 {
            counters.withLock { $0.refusedFull += 1 }
            let frame = ErrorMessage(id: nil, code: .busy, message: "the server is out of file descriptors; retry later").frame()
            var bytes: [UInt8] = []
            frame.encode(into: &bytes)
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            close(fd)
        }
        spareFD = open("/dev/null", O_RDONLY | O_CLOEXEC)
        return -1
    }

    /// Connection policy (docs/PROTOCOL.md, "Connections"): a uid holds at most
    /// `max_connections_per_uid` connections and everyone together `max_connections`. When a
    /// new connection would pass either cap, the longest-idle connection (nothing in flight,
    /// nothing unsent) of the uid that is over its cap, or else of the uid holding the most
    /// connections, is closed with `evicted`. So idle connections cannot lock others out,
    /// and a UI's one persistent connection is the last to go. Returns why the new
    /// connection is refused when nothing can be evicted.
    private func makeRoom(for owner: UInt32) -> String? {
        var perOwner: [UInt32: Int] = [:]
        for c in connections.values { perOwner[c.owner, default: 0] += 1 }
        let mine = perOwner[owner, default: 0]
        let victimOwner: UInt32
        if mine >= config.maxConnectionsPerUID {
            victimOwner = owner
        } else if connections.count >= config.maxConnections {
            victimOwner = perOwner.max { a, b in a.value < b.value || (a.value == b.value && a.key > b.key) }!.key
        } else {
            return nil
        }
        let victim = connections.values
            .filter { $0.owner == victimOwner && !$0.closeAfterFlush && $0.isIdle && !Self.hasUnreadInput($0.fd) }
            .min { $0.lastActivity < $1.lastActivity }
        guard let victim else {
            return mine >= config.maxConnectionsPerUID
                ? "too many connections from uid \(owner) (max_connections_per_uid \(config.maxConnectionsPerUID)), none of them idle"
                : "too many connections (max_connections \(config.maxConnections)), none of them idle"
        }
        counters.withLock { $0.evicted += 1 }
        logger.info("evicting an idle connection to make room", metadata: ["conn": "\(victim.serial)", "uid": "\(victim.owner)"])
        victim.enqueue(ErrorMessage(id: nil, code: .evicted,
                                    message: "closed: idle while the connection limits needed room for a new client").frame())
        flush(victim)
        closeConnection(victim, linger: true)
        return nil
    }

    /// Ends a connection the server closes on its own after its last frame was flushed:
    /// see `lingering`. At most `max_connections` linger; beyond, they close at once.
    private func linger(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        guard lingering.count < config.maxConnections else { close(fd); return }
        lingering[fd] = monotonicSeconds() + 1
    }

    /// Bytes the client sent that the loop has not read yet: a request on its way, so the
    /// connection is not idle (evicting it would drop that request unanswered).
    static func hasUnreadInput(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) > 0
    }

    private func isAllowed(_ peer: PeerCredentials?) -> Bool {
        if config.allowedUIDs.isEmpty && config.allowedGIDs.isEmpty { return true }
        guard let peer else { return false }
        if peer.uid == 0 { return true }  // root can read the model file anyway
        return config.allowedUIDs.contains(peer.uid) || config.allowedGIDs.contains(where: peer.isMember(of:))
    }

    private func readAvailable(_ c: Connection, _ buffer: inout [UInt8]) {
        // A fixed read size bounds what the decoder buffers between next() calls.
        while true {
            let n = buffer.withUnsafeMutableBytes { read(c.fd, $0.baseAddress, $0.count) }
            if n > 0 {
                c.lastActivity = monotonicSeconds()
                if c.closeAfterFlush { continue }  // after a fatal error: discard input
                c.decoder.feed(buffer[0..<n])
                drainFrames(c)
                if n < buffer.count { return }
            } else if n == 0 {
                // End of stream. A partial frame gets its malformed_frame error, sent before
                // the close. Otherwise the peer may only have shut down its writing side
                // (SHUT_WR after its last request): what it asked for still runs and is sent,
                // and the connection closes once nothing is in flight.
                c.decoder.finish()
                drainFrames(c)
                flush(c)
                if c.closeAfterFlush || c.isIdle {
                    closeConnection(c)
                } else {
                    c.readClosed = true
                }
                return
            } else {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                closeConnection(c)
                return
            }
        }
    }

    private func drainFrames(_ c: Connection) {
        while !c.closeAfterFlush {
            let frame: Frame?
            do {
                frame = try c.decoder.next()
            } catch {
                counters.withLock { $0.protocolErrors += 1 }
                logger.info("protocol error", metadata: ["conn": "\(c.serial)", "code": "\(error.code.name)"])
                c.enqueue(error.errorMessage.frame())
                if error.isFatal {
                    c.closeAfterFlush = true
                    cancelAll(c)
                }
                continue
            }
            guard let frame else { return }
            handler.handle(frame, on: c)
        }
    }

    private func flush(_ c: Connection) {
        c.shared.withLock { s in
            while s.sent < s.outbox.count {
                let n = s.outbox.withUnsafeBytes { raw in
                    send(c.fd, raw.baseAddress! + s.sent, raw.count - s.sent, Int32(MSG_NOSIGNAL))
                }
                if n > 0 { s.sent += n; c.lastActivity = monotonicSeconds(); continue }
                if n < 0 && errno == EINTR { continue }
                break  // EAGAIN or a dead peer (the read side notices)
            }
            if s.sent == s.outbox.count {
                s.outbox.removeAll(keepingCapacity: s.outbox.capacity <= 1 << 16)
                s.sent = 0
            } else if s.sent > 1 << 16 {
                s.outbox.removeFirst(s.sent)
                s.sent = 0
            }
        }
    }

    /// Cancels every request of `c` (disconnect, fatal error, overflow).
    private func cancelAll(_ c: Connection) {
        let handles = c.shared.withLock { s in Array(s.inflight.values) }
        for h in handles { engine.cancel(h) }
    }

    private func closeConnection(_ c: Connection, linger lingers: Bool = false) {
        guard connections[c.fd] != nil else { return }
        c.shared.withLock { $0.closed = true }
        cancelAll(c)
        connections[c.fd] = nil
        if lingers { linger(c.fd) } else { close(c.fd) }
        counters.withLock { $0.open = connections.count }
        logger.debug("connection closed", metadata: ["conn": "\(c.serial)"])
    }
}
