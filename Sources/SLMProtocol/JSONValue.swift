/// A JSON value, used for the open parts of the protocol (status objects, model info,
/// limits) and as the intermediate form between payload bytes and typed messages.
///
/// Integers and other numbers are kept apart so that ids, token ids and counters
/// round-trip exactly instead of passing through `Double` (which loses precision
/// above 2^53).
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// A number written without fraction or exponent that fits in `Int64`
    /// (the parser also maps integral literals like `12.0` here).
    case int(Int64)
    /// Any other finite number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// A short name of the value's JSON type, for error messages ("got a string").
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

extension JSONValue {
    /// Numbers compare by value, so `.int(3) == .double(3.0)`: the serialiser writes an
    /// integral double without a fraction and the parser reads it back as `.int`.
    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.double(a), .double(b)): return a == b
        case let (.int(a), .double(b)), let (.double(b), .int(a)): return Double(a) == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)): return a == b
        default: return false
        }
    }
}

// MARK: - Parsing

extension JSONValue {
    /// Parses UTF-8 JSON text (`JSONParser`): any syntax error, invalid UTF-8 inside a
    /// string, nesting deeper than `JSONParser.maxNesting` or a number out of `Double`
    /// range is `bad_json`, with what and where.
    public static func parse(_ bytes: some Collection<UInt8>) throws(ProtocolError) -> JSONValue {
        let parsed = bytes.withContiguousStorageIfAvailable { b in
            Result { () throws(ProtocolError) in try JSONParser.parse(b) }
        }
        if let parsed { return try parsed.get() }
        return try Array(bytes).withUnsafeBufferPointer { (b) throws(ProtocolError) in try JSONParser.parse(b) }
    }
}

// MARK: - Serialising

extension JSONValue {
    /// Serialises to compact UTF-8 JSON with object keys sorted by their UTF-8 bytes.
    ///
    /// Written by hand rather than with `JSONEncoder` so that the bytes are fully
    /// determined by the value: the worked hexdumps in docs/PROTOCOL.md are compared
    /// against this output in tests. Non-finite doubles (which JSON cannot express)
    /// are written as `null`.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        write(to: &out)
        return out
    }

    func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            if !d.isFinite { out.append(contentsOf: "null".utf8) }
            else if d == d.rounded(), abs(d) < 1e15 { out.append(contentsOf: String(Int64(d)).utf8) }
            else { out.append(contentsOf: d.description.utf8) }
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (n, item) in items.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            for (n, key) in keys.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                members[key]!.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// RFC 8259 string escaping: quote, backslash and C0 controls; everything else is
    /// emitted as UTF-8 as-is (Swift strings are always valid Unicode).
    static func writeString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Literals, so tests and servers can write open objects (`["state": "ready"]`) directly.
extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

/// An open JSON object whose keys the server fills (status, model info, limits).
public typealias JSONObject = [String: JSONValue]
