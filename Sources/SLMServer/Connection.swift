import SLMEngine
import SLMKernels
import SLMProtocol
import SLMSystemd
import Synchronization

/// One client connection. The I/O thread owns the decoder; the outbox and the in-flight
/// table are shared with the engine thread (which appends events) behind a mutex.
final class Connection: Sendable {
    let fd: Int32
    let peer: PeerCredentials?
    let serial: UInt64
    /// I/O thread only.
    nonisolated(unsafe) var decoder: FrameDecoder
    /// I/O thread only: close once the outbox is flushed (after a fatal error).
    nonisolated(unsafe) var closeAfterFlush = false
    /// I/O thread only: monotonic time of the last byte read from or written to the
    /// client, for choosing which idle connection to evict when the limits are reached.
    nonisolated(unsafe) var lastActivity = monotonicSeconds()
    /// I/O thread only: the peer shut down its writing side; the connection stays until
    /// its requests have finished and their replies are sent.
    nonisolated(unsafe) var readClosed = false
    /// The peer's uid (`SO_PEERCRED`), or `UInt32.max` (no user) when it could not be read.
    var owner: UInt32 { peer?.uid ?? UInt32.max }

    struct Shared {
        var outbox: [UInt8] = []
        var sent = 0  // bytes of `outbox` already written
        var inflight: [RequestID: RequestHandle] = [:]
        /// Requests accepted but not yet handed to the engine, so their ids count as in flight.
        var reserved: Set<RequestID> = []
        /// Reserved requests whose final frame went out before they were registered.
        var finishedEarly: Set<RequestID> = []
        /// Reserved requests a `cancel` named before they reached the engine.
        var cancelledEarly: Set<RequestID> = []
        var overflowed = false
        var closed = false
    }
    let shared = Mutex(Shared())
    let maxOutput: Int

    init(fd: Int32, peer: PeerCredentials?, serial: UInt64, maxFrame: Int, maxOutput: Int) {
        self.fd = fd
        self.peer = peer
        self.serial = serial
        self.maxOutput = maxOutput
        decoder = FrameDecoder(maxPayloadLength: maxFrame)
    }

    /// Queues an encoded frame; returns false when the client has stopped reading and the
    /// outbox is over its cap (the connection is then closed by the I/O thread).
    @discardableResult
    func enqueue(_ frame: Frame, finishing id: RequestID? = nil) -> Bool {
        shared.withLock { s in
            if let id {
                if s.inflight.removeValue(forKey: id) == nil && s.reserved.contains(id) { s.finishedEarly.insert(id) }
            }
            guard !s.closed, !s.overflowed else { return false }
            if let id, frame.payload.count + FrameHeader.size > maxOutput {
                // This reply alone could never be queued, however fast the client reads:
                // the request fails with its own error instead of the connection.
                let error = ErrorMessage(id: id, code: .replyTooLarge,
                                         message: "the reply is \(frame.payload.count) bytes, above this server's max_output_buffer of \(maxOutput)")
                guard s.outbox.count - s.sent + 1024 <= maxOutput else {
                    s.overflowed = true
                    return false
                }
                error.frame().encode(into: &s.outbox)
                return true
            }
            if s.outbox.count - s.sent + frame.payload.count + FrameHeader.size > maxOutput {
                s.overflowed = true
                return false
            }
            frame.encode(into: &s.outbox)
            return true
        }
    }

    var hasOutput: Bool { shared.withLock { $0.outbox.count > $0.sent } }

    /// Whether `id` names a request in flight (submitted, or still being prepared).
    func isInFlight(_ id: RequestID) -> Bool {
        shared.withLock { $0.inflight[id] != nil || $0.reserved.contains(id) }
    }

    /// Nothing in flight and nothing unsent: the connection may be evicted.
    var isIdle: Bool {
        shared.withLock { $0.inflight.isEmpty && $0.reserved.isEmpty && $0.outbox.count == $0.sent }
    }

    /// Marks a reserved request that has not reached the engine as cancelled; false when
    /// `id` is not such a request.
    func cancelReserved(_ id: RequestID) -> Bool {
        shared.withLock { s in
            guard s.reserved.contains(id), s.inflight[id] == nil else { return false }
            s.cancelledEarly.insert(id)
            return true
        }
    }

    /// Whether the request should not be started: its connection closed or a `cancel`
    /// named it while it waited to be prepared.
    func abandoned(_ id: RequestID) -> (closed: Bool, cancelled: Bool) {
        shared.withLock { ($0.closed, $0.cancelledEarly.contains(id)) }
    }

    enum Reservation { case ok, duplicate, full }

    /// Claims `id` for a request about to be submitted, so a duplicate is caught even while
    /// the first is being handed to the engine.
    func reserve(_ id: RequestID, limit: Int) -> Reservation {
        shared.withLock { s in
            if s.inflight[id] != nil || s.reserved.contains(id) { return .duplicate }
            if s.inflight.count + s.reserved.count >= limit { return .full }
            s.reserved.insert(id)
            return .ok
        }
    }

    /// Records the submitted request's handle; returns true when the connection closed or
    /// a `cancel` named the request in the meantime (the caller cancels it).
    func register(_ id: RequestID, _ handle: RequestHandle) -> Bool {
        shared.withLock { s in
            s.reserved.remove(id)
            let cancelled = s.cancelledEarly.remove(id) != nil
            // A request can finish on the engine thread before it is registered here.
            if s.finishedEarly.remove(id) == nil && !s.closed { s.inflight[id] = handle }
            return s.closed || cancelled
        }
    }

    func unreserve(_ id: RequestID) {
        shared.withLock { s in
            s.reserved.remove(id)
            s.finishedEarly.remove(id)
            s.cancelledEarly.remove(id)
        }
    }
}
