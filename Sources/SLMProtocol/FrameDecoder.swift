/// Splits a byte stream into frames: an explicit state machine, fed whatever the socket
/// delivered (a byte, a partial header, several frames at once).
///
/// Usage per connection:
///
/// ```swift
/// decoder.feed(bytesJustRead)
/// while let frame = try decoder.next() { handle(frame) }
/// // at EOF:
/// decoder.finish(); while let frame = try decoder.next() { handle(frame) }
/// ```
///
/// Guarantees:
/// - The length field is checked against `maxPayloadLength` as soon as the header is
///   complete, before any payload byte is stored, so an oversize frame costs no
///   allocation: `next()` throws `frame_too_large` after the 12th header byte.
/// - Bad magic is detected at the first wrong byte; a bad version or non-zero flags as
///   soon as that byte arrives.
/// - Framing errors are fatal: the decoder enters `failed`, drops all further input and
///   rethrows the same error on every `next()`; the connection must be closed after the
///   error frame is sent, since the stream position can no longer be trusted.
/// - The partial-frame buffer never holds more than one header plus `maxPayloadLength`
///   bytes. Frames completed by a `feed` are queued until taken with `next()`; the queue
///   holds at most what that `feed` was given, so a reader bounds it by its read size.
/// - Frames completed before a framing error are delivered first, then the error.
public struct FrameDecoder: Sendable {
    /// Where the machine is in the stream.
    public enum State: Sendable, Equatable {
        /// Collecting header bytes; `received` of 12 so far (0 at a frame boundary).
        case header(received: Int)
        /// Header accepted; collecting `length` payload bytes of a frame of `type`.
        case payload(type: FrameType, length: Int, received: Int)
        /// A fatal framing error occurred; the decoder accepts nothing more.
        case failed(ProtocolError)
        /// `finish()` was called at a frame boundary: the stream ended cleanly.
        case finished
    }

    /// The largest payload length accepted; larger frames are refused from the header.
    public let maxPayloadLength: Int
    /// The current state (exposed for tests and diagnostics).
    public private(set) var state: State = .header(received: 0)

    private var header: [UInt8] = []
    private var payload: [UInt8] = []
    private var ready: [Frame] = []
    private var readyHead = 0

    /// - Parameter maxPayloadLength: hard cap on a frame's payload length in bytes
    ///   (default 1 MiB); must be in `0...UInt32.max`.
    public init(maxPayloadLength: Int = FrameHeader.defaultMaxPayloadLength) {
        precondition(maxPayloadLength >= 0 && maxPayloadLength <= Int(UInt32.max), "max payload out of range")
        self.maxPayloadLength = maxPayloadLength
        header.reserveCapacity(FrameHeader.size)
    }

    /// Number of bytes held for the frame being assembled (header or payload).
    public var partialByteCount: Int { header.count + payload.count }

    /// Consumes input bytes, advancing the state machine. Never throws: a framing error
    /// is recorded and surfaced by `next()` after the frames completed before it.
    public mutating func feed(_ bytes: some Collection<UInt8>) {
        var index = bytes.startIndex
        while index != bytes.endIndex {
            switch state {
            case .failed, .finished:
                return  // nothing after a fatal error or EOF is meaningful

            case .header(let received):
                let byte = bytes[index]
                bytes.formIndex(after: &index)
                if let error = Self.check(headerByte: byte, at: received) {
                    fail(error)
                    return
                }
                header.append(byte)
                if received + 1 < FrameHeader.size {
                    state = .header(received: received + 1)
                } else {
                    headerComplete()
                }

            case .payload(let type, let length, let received):
                let wanted = length - received
                let end = bytes.index(index, offsetBy: wanted, limitedBy: bytes.endIndex) ?? bytes.endIndex
                payload.append(contentsOf: bytes[index..<end])
                let got = bytes.distance(from: index, to: end)
                index = end
                if received + got == length {
                    emit(Frame(type: type, payload: payload))
                } else {
                    state = .payload(type: type, length: length, received: received + got)
                }
            }
        }
    }

    /// Tells the decoder the peer closed its end. Ending inside a frame is a framing
    /// error (`malformed_frame`), reported by `next()`; ending at a boundary is clean.
    public mutating func finish() {
        switch state {
        case .header(received: 0):
            state = .finished
        case .header(let received):
            fail(ProtocolError(.malformedFrame, "stream ended after \(received) of \(FrameHeader.size) header bytes"))
        case .payload(_, let length, let received):
            fail(ProtocolError(.malformedFrame, "stream ended after \(received) of \(length) payload bytes"))
        case .failed, .finished:
            break
        }
    }

    /// The next complete frame, or nil when more input is needed (or the stream ended
    /// cleanly). Throws the fatal framing error, if any, once earlier frames are taken.
    public mutating func next() throws(ProtocolError) -> Frame? {
        if readyHead < ready.count {
            let frame = ready[readyHead]
            readyHead += 1
            if readyHead == ready.count {  // drained: release the queue's storage
                ready.removeAll(keepingCapacity: false)
                readyHead = 0
            }
            return frame
        }
        if case .failed(let error) = state { throw error }
        return nil
    }

    // MARK: - Transitions

    /// Validates header byte `offset` as soon as it arrives, so garbage is refused early.
    private static func check(headerByte byte: UInt8, at offset: Int) -> ProtocolError? {
        switch offset {
        case 0..<4 where byte != FrameHeader.magic[offset]:
            return ProtocolError(.malformedFrame, "bad magic: byte \(offset) is 0x\(hex(byte)), expected 'SLMD'")
        case 4 where byte != SLMProtocolVersion.current:
            return ProtocolError(.unsupportedVersion,
                                 "protocol version \(byte) is not supported (this peer speaks \(SLMProtocolVersion.current))")
        case 6...7 where byte != 0:
            return ProtocolError(.malformedFrame, "reserved flags must be zero (byte \(offset) is 0x\(hex(byte)))")
        default:
            return nil
        }
    }

    private mutating func headerComplete() {
        let type = FrameType(rawValue: header[5])
        let length = header[8..<12].reduce(0) { $0 << 8 | Int($1) }
        header.removeAll(keepingCapacity: true)
        if length > maxPayloadLength {
            fail(ProtocolError(.frameTooLarge, "payload length \(length) exceeds the maximum of \(maxPayloadLength) bytes"))
        } else if length == 0 {
            emit(Frame(type: type, payload: []))
        } else {
            // Safe to reserve: length is already known to be within the cap.
            payload.reserveCapacity(length)
            state = .payload(type: type, length: length, received: 0)
        }
    }

    private mutating func emit(_ frame: Frame) {
        ready.append(frame)
        payload = []
        state = .header(received: 0)
    }

    private mutating func fail(_ error: ProtocolError) {
        header = []
        payload = []
        state = .failed(error)
    }
}

private func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
}
