/// A streaming event (frame type 3) of a request that has not ended yet.
///
/// Wire form: `{"id": ..., "event": "token", "text": "...", "token_count": n}`.
public struct Event: Sendable, Equatable {
    /// The event kind. A struct over the wire string: clients skip kinds they do not know,
    /// so new kinds are pure additions.
    public struct Kind: RawRepresentable, Sendable, Hashable {
        /// The wire string.
        public let rawValue: String
        /// Wraps a wire value, known or not.
        public init(rawValue: String) { self.rawValue = rawValue }
        /// New generated text.
        public static let token = Kind(rawValue: "token")
    }

    /// The client-chosen id of the request this belongs to, echoed exactly.
    public var id: RequestID
    /// What the event reports (`token` in v1).
    public var kind: Kind
    /// A text delta: always whole UTF-8 characters (the server holds back the bytes of an
    /// incomplete character until the next token completes it), possibly empty.
    public var text: String
    /// Tokens generated so far for this request, this event included (cumulative, so
    /// coalesced events stay meaningful).
    public var tokenCount: Int

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(id: RequestID, kind: Kind = .token, text: String, tokenCount: Int) {
        self.id = id
        self.kind = kind
        self.text = text
        self.tokenCount = tokenCount
    }

    /// The payload bytes: compact JSON, keys sorted (deterministic, so hexdumps are stable).
    public func payload() -> [UInt8] {
        var b = ObjectBuilder()
        b["id"] = id.json
        b["event"] = .string(kind.rawValue)
        b["text"] = .string(text)
        b["token_count"] = .int(Int64(tokenCount))
        return b.payload
    }

    /// This message as a frame of its type, ready for `encode()`.
    public func frame() -> Frame { Frame(type: .event, payload: payload()) }

    /// Decodes a payload (client side): `bad_utf8`, `bad_json` or `bad_field` on bad input; unknown members ignored.
    public init(payload: some Collection<UInt8>) throws(ProtocolError) {
        let top = try FieldReader.payload(payload)
        let id = try RequestID.read(top.value("id") ?? .null, path: "id")
        let r = FieldReader(top.members, requestID: id)
        self.id = id
        self.kind = Kind(rawValue: try r.required("event", "expected a string") { (k) throws(ProtocolError) in try r.string(k) })
        self.text = try r.string("text") ?? ""
        self.tokenCount = Int(try r.int("token_count", in: 0...Int64.max) ?? 0)
    }
}

/// An error (frame type 4): ends the request `id`, or, when `code.isFatal`, the connection.
///
/// Wire form: `{"id": <id or null>, "code": "bad_field", "code_num": 7, "message": "..."}`.
/// `id` is null when the error is not tied to a request (framing errors, unreadable id).
public struct ErrorMessage: Sendable, Equatable {
    /// The request this error ends; nil (JSON `null`) for connection-level errors.
    public var id: RequestID?
    /// The stable code (`code` and `code_num` on the wire).
    public var code: ErrorCode
    /// Human detail; not stable.
    public var message: String

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(id: RequestID?, code: ErrorCode, message: String) {
        self.id = id
        self.code = code
        self.message = message
    }

    /// The payload bytes: compact JSON, keys sorted (deterministic, so hexdumps are stable).
    public func payload() -> [UInt8] {
        var b = ObjectBuilder()
        b.members["id"] = id?.json ?? .null
        b["code"] = .string(code.name)
        b["code_num"] = .int(Int64(code.number))
        b["message"] = .string(message)
        return b.payload
    }

    /// This message as a frame of its type, ready for `encode()`.
    public func frame() -> Frame { Frame(type: .error, payload: payload()) }

    /// Decodes a payload (client side): `bad_utf8`, `bad_json` or `bad_field` on bad input; unknown members ignored.
    public init(payload: some Collection<UInt8>) throws(ProtocolError) {
        let r = try FieldReader.payload(payload)
        self.id = try r.value("id").map { (v) throws(ProtocolError) in try RequestID.read(v, path: "id") }
        let name = try r.required("code", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
        let number = try r.required("code_num", "expected an integer") { (k) throws(ProtocolError) in try r.int(k, in: 0...Int64(Int32.max)) }
        self.code = ErrorCode(number: Int(number), name: name)
        self.message = try r.string("message") ?? ""
    }

    /// The error as a `ProtocolError` (e.g. to throw on the client side).
    public var error: ProtocolError { ProtocolError(code, message, requestID: id) }
}

/// Anything a server sends: what a client decodes each incoming frame into.
public enum ServerMessage: Sendable, Equatable {
    case reply(Reply)
    case event(Event)
    case error(ErrorMessage)

    /// The request this message belongs to (nil for connection-level errors).
    public var id: RequestID? {
        switch self {
        case .reply(let r): return r.id
        case .event(let e): return e.id
        case .error(let e): return e.id
        }
    }

    /// This message as a frame of its type, ready for `encode()`.
    public func frame() -> Frame {
        switch self {
        case .reply(let r): return r.frame()
        case .event(let e): return e.frame()
        case .error(let e): return e.frame()
        }
    }

    /// Decodes a server frame; a request frame or an unknown frame type is `unknown_type`.
    public init(frame: Frame) throws(ProtocolError) {
        switch frame.type {
        case .reply: self = .reply(try Reply(payload: frame.payload))
        case .event: self = .event(try Event(payload: frame.payload))
        case .error: self = .error(try ErrorMessage(payload: frame.payload))
        default: throw ProtocolError(.unknownType, "frame type \(frame.type) is not sent by a server")
        }
    }
}
