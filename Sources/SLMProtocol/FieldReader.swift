import SLMLimits

/// Typed access to the members of a JSON object, turning every wrong type, missing
/// required field or out-of-range value into a `bad_field` error that names the field
/// path and what was expected. Never traps on unexpected JSON.
///
/// `null` is treated as absent, so clients that serialise unset options as `null` work.
/// Members not asked for are ignored: that is what makes new fields pure additions.
struct FieldReader {
    let members: JSONObject
    /// Path of this object within the payload, e.g. `messages[2]`; empty at top level.
    let path: String
    /// Request id to attach to errors (nil while reading the id itself, or in replies).
    let requestID: RequestID?

    init(_ members: JSONObject, path: String = "", requestID: RequestID? = nil) {
        self.members = members
        self.path = path
        self.requestID = requestID
    }

    /// Reads a payload (already UTF-8 checked) that must be one JSON object.
    static func payload(_ bytes: some Collection<UInt8>) throws(ProtocolError) -> FieldReader {
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw ProtocolError(.badUTF8, "payload is not valid UTF-8")
        }
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw loneSurrogateError(bytes) ?? error
        }
        guard case .object(let members) = value else {
            throw ProtocolError(.badJSON, "payload must be a JSON object")
        }
        return FieldReader(members)
    }

    /// For a payload that did not parse only because a string escape is a lone UTF-16
    /// surrogate: `bad_field` naming the top-level member that holds it, with the id when
    /// the id is readable (it is not when the surrogate is in the id itself). Nil when the
    /// payload is broken otherwise (then it stays `bad_json` without an id).
    ///
    /// `bad_field` rather than `bad_json`: the payload is JSON by RFC 8259's grammar, and the
    /// fault is one member's value, which the client can name and fix like any other.
    private static func loneSurrogateError(_ bytes: some Collection<UInt8>) -> ProtocolError? {
        guard let found = LoneSurrogates.find(bytes), let member = found.member,
              case .object(let members)? = try? JSONValue.parse(found.repaired) else { return nil }
        let id = member == "id" ? nil : members["id"].flatMap { try? RequestID.read($0, path: "id") }
        return .badField(member, "contains the lone UTF-16 surrogate \(found.escape) (half of a pair: text cut inside a character), which no Unicode string holds",
                         requestID: id)
    }

    func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func fail(_ key: String, _ expectation: String, got value: JSONValue?) -> ProtocolError {
        let got = value.map { ", got \($0.typeName)" } ?? " (missing)"
        return .badField(path(key), expectation + got, requestID: requestID)
    }

    func value(_ key: String) -> JSONValue? {
        guard let value = members[key], value != .null else { return nil }
        return value
    }

    func required<T>(_ key: String, _ expectation: String, _ read: (String) throws(ProtocolError) -> T?) throws(ProtocolError) -> T {
        guard let value = try read(key) else { throw fail(key, expectation, got: nil) }
        return value
    }

    func string(_ key: String, maxBytes: Int? = nil) throws(ProtocolError) -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let s) = value else { throw fail(key, "expected a string", got: value) }
        if let maxBytes, s.utf8.count > maxBytes {
            throw .badField(path(key), "expected a string of at most \(maxBytes) bytes, got \(s.utf8.count)", requestID: requestID)
        }
        return s
    }

    /// The string member `limit.member`, of `limit`'s range of UTF-8 bytes.
    func string(_ limit: Limit<Int64>) throws(ProtocolError) -> String? {
        guard let s = try string(limit.member, maxBytes: Int(limit.upperBound)) else { return nil }
        guard limit.contains(Int64(s.utf8.count)) else {
            throw .badField(path(limit.member), "expected a string of \(limit.lowerBound)...\(limit.upperBound) bytes, got \(s.utf8.count)",
                            requestID: requestID)
        }
        return s
    }

    /// The integer member `limit.member`, in the limit's range.
    func int(_ limit: Limit<Int64>) throws(ProtocolError) -> Int64? { try int(limit.member, in: limit.range) }

    /// The number member `limit.member`, in the limit's range.
    func number(_ limit: Limit<Double>) throws(ProtocolError) -> Double? {
        try number(limit.member, in: limit.range, excludingLowerBound: limit.lowerExcluded)
    }

    func bool(_ key: String) throws(ProtocolError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let b) = value else { throw fail(key, "expected a boolean", got: value) }
        return b
    }

    func int(_ key: String, in range: ClosedRange<Int64>) throws(ProtocolError) -> Int64? {
        guard let value = value(key) else { return nil }
        return try Self.int(value, in: range, path: path(key), requestID: requestID)
    }

    static func int(_ value: JSONValue, in range: ClosedRange<Int64>, path: String,
                    requestID: RequestID?) throws(ProtocolError) -> Int64 {
        if case .int(let i) = value, range.contains(i) { return i }
        // The message only for a refusal: formatting it for every member read was a tenth of
        // the I/O thread's work on a request (perf).
        let expectation = "expected an integer in \(range.lowerBound)...\(range.upperBound)"
        switch value {
        case .int(let i): throw .badField(path, "\(expectation), got \(i)", requestID: requestID)
        case .double(let d): throw .badField(path, "\(expectation), got \(d)", requestID: requestID)
        default: throw .badField(path, "\(expectation), got \(value.typeName)", requestID: requestID)
        }
    }

    /// A number in `range`; with `excludingLowerBound`, in (lower, upper].
    func number(_ key: String, in range: ClosedRange<Double>, excludingLowerBound: Bool = false) throws(ProtocolError) -> Double? {
        guard let value = value(key) else { return nil }
        var expectation: String {
            excludingLowerBound ? "expected a number in (\(range.lowerBound), \(range.upperBound)]"
                                : "expected a number in \(range.lowerBound)...\(range.upperBound)"
        }
        let d: Double
        switch value {
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        default: throw fail(key, expectation, got: value)
        }
        guard range.contains(d), !(excludingLowerBound && d == range.lowerBound) else {
            throw .badField(path(key), "\(expectation), got \(d)", requestID: requestID)
        }
        return d
    }

    func array(_ key: String) throws(ProtocolError) -> [JSONValue]? {
        guard let value = value(key) else { return nil }
        guard case .array(let items) = value else { throw fail(key, "expected an array", got: value) }
        return items
    }

    func object(_ key: String) throws(ProtocolError) -> JSONObject? {
        guard let value = value(key) else { return nil }
        guard case .object(let members) = value else { throw fail(key, "expected an object", got: value) }
        return members
    }

    /// A reader for a nested object (`key` is the already-built path, e.g. `messages[2]`).
    func nested(_ value: JSONValue, path nestedPath: String) throws(ProtocolError) -> FieldReader {
        guard case .object(let members) = value else {
            throw .badField(nestedPath, "expected an object, got \(value.typeName)", requestID: requestID)
        }
        return FieldReader(members, path: nestedPath, requestID: requestID)
    }
}

/// Builds a JSON object, skipping nil optionals so absent options stay absent.
struct ObjectBuilder {
    var members: JSONObject = [:]
    subscript(key: String) -> JSONValue? {
        get { members[key] }
        set { if let newValue { members[key] = newValue } }
    }
    var payload: [UInt8] { JSONValue.object(members).serialized() }
}
