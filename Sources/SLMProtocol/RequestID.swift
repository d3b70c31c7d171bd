import SLMLimits

/// A client-chosen request id: a JSON string or integer, echoed back exactly (same JSON
/// type, same value) in every reply, event and error of that request.
///
/// Ids must be unique per connection among requests still in flight (the server answers
/// `duplicate_id` otherwise); they may be reused once a request has ended.
public enum RequestID: Sendable, Hashable, CustomStringConvertible {
    case int(Int64)
    case string(String)

    /// Longest accepted string id, in UTF-8 bytes: ids are keys in the server's in-flight
    /// table, not payload.
    public static let maxStringBytes = Int(Limits.idBytes.upperBound)

    /// A short human-readable form for logs.
    public var description: String {
        switch self {
        case .int(let i): return String(i)
        case .string(let s): return "\"\(s)\""
        }
    }

    /// The JSON form of the id.
    public var json: JSONValue {
        switch self {
        case .int(let i): return .int(i)
        case .string(let s): return .string(s)
        }
    }

    /// Reads an id from its JSON form; `path` names the field for the error message.
    static func read(_ value: JSONValue, path: String) throws(ProtocolError) -> RequestID {
        let expected = "expected a string of 1...\(maxStringBytes) bytes or an integer"
        switch value {
        case .int(let i):
            return .int(i)
        case .string(let s) where !s.isEmpty && s.utf8.count <= maxStringBytes:
            return .string(s)
        case .string:
            throw .badField(path, "\(expected), got a string of \(value.stringByteCount) bytes")
        default:
            throw .badField(path, "\(expected), got \(value.typeName)")
        }
    }
}

/// Literals: `Request(id: 1, ...)`, `Request(id: "a", ...)`.
extension RequestID: ExpressibleByIntegerLiteral, ExpressibleByStringLiteral {
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(stringLiteral value: String) { self = .string(value) }
}

extension JSONValue {
    fileprivate var stringByteCount: Int {
        if case .string(let s) = self { return s.utf8.count }
        return 0
    }
}
