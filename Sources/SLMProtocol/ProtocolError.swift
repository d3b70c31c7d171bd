/// A protocol-level failure: what the decoder, the request parser or the server reports,
/// and what an error frame carries.
///
/// A struct around a stable `ErrorCode` (not an enum of cases) so new codes can be added
/// without breaking anyone who switches on errors, in the manner of swift-nio's errors.
public struct ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The stable code sent on the wire.
    public var code: ErrorCode
    /// Human detail; not stable, never parse it.
    public var message: String
    /// The id of the request this error belongs to, when it is known (it is not for
    /// framing errors, or when the payload's `id` itself could not be read).
    public var requestID: RequestID?
    /// For `bad_field`: the path of the offending field, e.g. `max_tokens` or
    /// `messages[1].role`.
    public var field: String?

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(_ code: ErrorCode, _ message: String, requestID: RequestID? = nil, field: String? = nil) {
        self.code = code
        self.message = message
        self.requestID = requestID
        self.field = field
    }

    /// Whether the connection must be closed after reporting this error.
    public var isFatal: Bool { code.isFatal }

    /// A short human-readable form for logs.
    public var description: String {
        let id = requestID.map { " [id \($0)]" } ?? ""
        return "\(code.name)\(id): \(message)"
    }

    /// The error frame payload to send for this error.
    public var errorMessage: ErrorMessage { ErrorMessage(id: requestID, code: code, message: message) }

    /// A `bad_field` error whose message names the field and what was expected,
    /// e.g. `field 'max_tokens': expected an integer in 1...1048576, got a string`.
    static func badField(_ path: String, _ expectation: String, requestID: RequestID? = nil) -> ProtocolError {
        ProtocolError(.badField, "field '\(path)': \(expectation)", requestID: requestID, field: path)
    }
}
