import SLMEngine
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

    struct Shared {
        var outbox: [UInt8] = []
        var sent = 0  // bytes of `outbox` already written
        var inflight: [RequestID: RequestHandle] = [:]
        /// Requests accepted but not yet handed to the engine, so their ids count as in flight.
        var reserved: Set<RequestID> = []
        /// Reserved requests whose final frame went out before they were registered.
        var finishedEarly: Set<RequestID> = []
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
            if s.outbox.count - s.sent + frame.payload.count + FrameHeader.size > maxOutput {
                s.overflowed = true
                return false
            }
            frame.encode(into: &s.outbox)
            return true
        }
    }

    var hasOutput: Bool { shared.withLock { $0.outbox.count > $0.sent } }

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

    /// Records the submitted request's handle; returns true when the connection closed in
    /// the meantime (the caller cancels the request).
    func register(_ id: RequestID, _ handle: RequestHandle) -> Bool {
        shared.withLock { s in
            s.reserved.remove(id)
            // A request can finish on the engine thread before it is registered here.
            if s.finishedEarly.remove(id) == nil && !s.closed { s.inflight[id] = handle }
            return s.closed
        }
    }

    func unreserve(_ id: RequestID) {
        shared.withLock { s in
            s.reserved.remove(id)
            s.finishedEarly.remove(id)
        }
    }
}
