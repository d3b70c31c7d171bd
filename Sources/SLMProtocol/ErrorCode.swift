/// A stable protocol error code: a snake_case name and a number, both sent in error
/// frames.
///
/// The table (docs/PROTOCOL.md, "Error codes") is append-only: a code's name, number and
/// fatality never change and numbers are never reused, so clients may match on either.
/// It is a struct rather than an enum so that a client built against an older table can
/// still represent a code it does not know (see `init(number:name:)`).
public struct ErrorCode: Sendable, Hashable, CustomStringConvertible {
    /// The wire number (`code_num`).
    public let number: Int
    /// The wire name (`code`).
    public let name: String
    /// Whether the server closes the connection after sending this error: true only for
    /// framing errors, after which the byte stream can no longer be trusted.
    public let isFatal: Bool

    init(_ number: Int, _ name: String, fatal: Bool = false) {
        self.number = number
        self.name = name
        self.isFatal = fatal
    }

    /// A code received from a peer. Known numbers resolve to the table entry; unknown
    /// ones (a newer peer) are kept as received and treated as non-fatal.
    public init(number: Int, name: String) {
        self = ErrorCode.all.first { $0.number == number } ?? ErrorCode(number, name)
    }

    /// Looks a code up by name in this build's table.
    public init?(name: String) {
        guard let code = ErrorCode.all.first(where: { $0.name == name }) else { return nil }
        self = code
    }

    /// A short human-readable form for logs.
    public var description: String { "\(name) (\(number))" }

    /// The frame header is wrong (bad magic, non-zero flags) or the stream ended inside a frame.
    public static let malformedFrame = ErrorCode(1, "malformed_frame", fatal: true)
    /// The header's protocol version is not one this server speaks.
    public static let unsupportedVersion = ErrorCode(2, "unsupported_version", fatal: true)
    /// The header announces a payload larger than the configured maximum.
    public static let frameTooLarge = ErrorCode(3, "frame_too_large", fatal: true)
    /// The payload is not valid UTF-8.
    public static let badUTF8 = ErrorCode(4, "bad_utf8")
    /// The payload is not a JSON object.
    public static let badJSON = ErrorCode(5, "bad_json")
    /// Unknown `op` (or a frame type the receiver does not accept).
    public static let unknownType = ErrorCode(6, "unknown_type")
    /// A field is missing, has the wrong JSON type or is out of range; the message names it.
    public static let badField = ErrorCode(7, "bad_field")
    /// Too many requests in flight or queued; retry later.
    public static let busy = ErrorCode(8, "busy")
    /// Admitting the request would exceed the memory budget (e.g. KV cache for its context).
    public static let overMemoryBudget = ErrorCode(9, "over_memory_budget")
    /// The request was cancelled before it produced a result.
    public static let cancelled = ErrorCode(10, "cancelled")
    /// The request's `deadline_ms` passed before it produced a result.
    public static let deadlineExceeded = ErrorCode(11, "deadline_exceeded")
    /// A bug or unexpected failure in the server.
    public static let `internal` = ErrorCode(12, "internal")
    /// The thing referred to does not exist (e.g. `cancel` of an id not in flight).
    public static let notFound = ErrorCode(13, "not_found")
    /// A request reused an id that is still in flight on this connection.
    public static let duplicateID = ErrorCode(14, "duplicate_id")
    /// The prompt (plus `max_tokens`) does not fit the model's context.
    public static let contextOverflow = ErrorCode(15, "context_overflow")
    /// The peer is not allowed to make this request.
    public static let permissionDenied = ErrorCode(16, "permission_denied")
    /// The server is draining and accepts no new requests.
    public static let shuttingDown = ErrorCode(17, "shutting_down")
    /// Valid request the server or model cannot serve (e.g. `chat` without a chat template).
    public static let unsupported = ErrorCode(18, "unsupported")
    /// The reply to this request would be larger than the server's `max_output_buffer`
    /// (e.g. `tokenize` of a huge text); nothing else of it is sent. The connection stays open.
    public static let replyTooLarge = ErrorCode(19, "reply_too_large")
    /// The server closes this connection: it was idle (nothing in flight, nothing unread)
    /// when the connection limits needed room for a new client. Reconnect to go on.
    public static let evicted = ErrorCode(20, "evicted", fatal: true)

    /// Every code of this build, in number order. Append only.
    public static let all: [ErrorCode] = [
        .malformedFrame, .unsupportedVersion, .frameTooLarge, .badUTF8, .badJSON, .unknownType,
        .badField, .busy, .overMemoryBudget, .cancelled, .deadlineExceeded, .internal, .notFound,
        .duplicateID, .contextOverflow, .permissionDenied, .shuttingDown, .unsupported, .replyTooLarge, .evicted,
    ]
}
