/// The kind of a frame, from header byte 5.
///
/// A struct over the raw byte rather than an enum so that a frame type added by a later
/// protocol version still decodes as a frame (the framing is intact) and the receiver can
/// answer `unknown_type` instead of dropping the connection.
public struct FrameType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The header byte.
    public let rawValue: UInt8
    /// Wraps a wire value, known or not.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Client → server: one request (`Request`).
    public static let request = FrameType(rawValue: 1)
    /// Server → client: a result (`Reply`), the last frame of its request.
    public static let reply = FrameType(rawValue: 2)
    /// Server → client: a streaming event (`Event`) of an unfinished request.
    public static let event = FrameType(rawValue: 3)
    /// Server → client: an error (`ErrorMessage`); ends its request, or the connection if fatal.
    public static let error = FrameType(rawValue: 4)

    /// A short human-readable form for logs.
    public var description: String {
        switch self {
        case .request: return "request"
        case .reply: return "reply"
        case .event: return "event"
        case .error: return "error"
        default: return "type \(rawValue)"
        }
    }
}

/// Constants of the 12-byte frame header. All multi-byte fields are big-endian.
///
/// ```
/// offset 0      4        5     6       8                12
///        | SLMD | version | type | flags | payload length | payload ...
///          4 B     u8       u8    u16 BE     u32 BE
/// ```
public enum FrameHeader {
    /// `SLMD` in ASCII: lets a peer reject a stray client (HTTP, telnet) at the first byte.
    public static let magic: [UInt8] = [0x53, 0x4C, 0x4D, 0x44]
    /// Header size in bytes.
    public static let size = 12
    /// The default hard cap on the payload length field: 1 MiB.
    public static let defaultMaxPayloadLength = 1 << 20
}

/// One protocol frame: a type and a payload (one UTF-8 JSON object for all v1 types).
///
/// The header's version and flags are not stored: a decoded frame always had version 1
/// and zero flags, and encoding always writes those.
public struct Frame: Sendable, Equatable {
    /// Header byte 5.
    public var type: FrameType
    /// The payload bytes (UTF-8 JSON for every v1 frame type), at most the receiver's maximum.
    public var payload: [UInt8]

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(type: FrameType, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }

    /// The frame's bytes on the wire: header then payload.
    /// - Precondition: the payload fits in the u32 length field.
    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    /// Appends the frame's bytes to `out` (lets a writer batch several frames in one buffer).
    public func encode(into out: inout [UInt8]) {
        precondition(payload.count <= Int(UInt32.max), "payload does not fit the u32 length field")
        let length = UInt32(payload.count)
        out.reserveCapacity(out.count + FrameHeader.size + payload.count)
        out.append(contentsOf: FrameHeader.magic)
        out.append(SLMProtocolVersion.current)
        out.append(type.rawValue)
        out.append(contentsOf: [0, 0])  // flags: reserved, zero in v1
        out.append(UInt8(truncatingIfNeeded: length >> 24))
        out.append(UInt8(truncatingIfNeeded: length >> 16))
        out.append(UInt8(truncatingIfNeeded: length >> 8))
        out.append(UInt8(truncatingIfNeeded: length))
        out.append(contentsOf: payload)
    }
}
