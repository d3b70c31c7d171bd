import SLMJSON

/// A parsed JSON document, keeping object members in their written order (a schema's
/// `properties` order is the order constrained output uses, so a dictionary would not do).
///
/// Numbers keep their source text: an `enum`/`const` number is emitted exactly as the
/// schema writes it, and integer bounds are read without a detour through `Double`.
///
/// Not `SLMProtocol.JSONValue`: that one keeps objects as dictionaries, which lose the
/// member order. A schema arriving over the protocol should reach `JSONSchemaCompiler` as
/// its original text.
public indirect enum OrderedJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's text as written (valid RFC 8259 number syntax).
    case number(String)
    case string(String)
    case array([OrderedJSON])
    /// Members in source order; a duplicate name is a parse error.
    case object([(key: String, value: OrderedJSON)])

    public static func == (a: OrderedJSON, b: OrderedJSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The member named `key` of an object.
    public subscript(key: String) -> OrderedJSON? {
        if case .object(let members) = self { return members.first { $0.key == key }?.value }
        return nil
    }

    /// Compact serialisation: no whitespace, members in stored order, strings escaped with
    /// the short escapes (`\" \\ \b \f \n \r \t`) and `\u00XX` for other control bytes; every
    /// other character is written raw as UTF-8. This is the spelling constrained decoding
    /// produces for `enum`/`const` values.
    public var compactText: String {
        var out: [UInt8] = []
        appendCompact(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public func appendCompact(to out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .number(let n): out += Array(n.utf8)
        case .string(let s): OrderedJSON.appendQuoted(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, v) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.appendCompact(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, m) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                OrderedJSON.appendQuoted(m.key, to: &out)
                out.append(UInt8(ascii: ":"))
                m.value.appendCompact(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Why JSON text could not be parsed; `offset` is the byte offset of the problem.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let offset: Int
    public let message: String
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

extension OrderedJSON {
    /// Parses RFC 8259 JSON (one value, surrounding whitespace allowed). Nesting is capped
    /// at `maxDepth` so hostile input cannot exhaust the stack.
    public init(parsing text: String, maxDepth: Int = 64) throws(JSONParseError) {
        let bytes = Array(text.utf8)
        self = try bytes.withUnsafeBufferPointer { (b) throws(JSONParseError) in
            var p = JSONParser(JSONLexer(b), maxDepth: maxDepth)
            do throws(JSONSyntaxError) {
                return try p.parseDocument()
            } catch {
                throw JSONParseError(offset: error.offset, message: error.what)
            }
        }
    }
}

/// The schemas' recursive descent over `JSONLexer`'s tokens (the protocol's `JSONValue`
/// parser reads the same tokens): members kept in order, a duplicate name an error, no
/// trailing comma.
struct JSONParser {
    var lex: JSONLexer
    let maxDepth: Int
    var depth = 0

    init(_ lex: JSONLexer, maxDepth: Int) {
        self.lex = lex
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONSyntaxError) -> OrderedJSON {
        let v = try parseValue()
        lex.skipWhitespace()
        guard lex.next == nil else { throw lex.fail("unexpected text after the value") }
        return v
    }

    mutating func parseValue() throws(JSONSyntaxError) -> OrderedJSON {
        lex.skipWhitespace()
        guard let c = lex.next else { throw lex.fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "n"): try lex.literal("null"); return .null
        case UInt8(ascii: "t"): try lex.literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try lex.literal("false"); return .bool(false)
        case UInt8(ascii: "\""): return .string(try lex.string())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let n = try lex.number()
            return .number(String(decoding: UnsafeBufferPointer(rebasing: lex.bytes[n.text]), as: UTF8.self))
        case UInt8(ascii: "["):
            depth += 1
            guard depth <= maxDepth else { throw lex.fail("nesting deeper than \(maxDepth)") }
            defer { depth -= 1 }
            lex.at += 1
            var items: [OrderedJSON] = []
            lex.skipWhitespace()
            if lex.next == UInt8(ascii: "]") { lex.at += 1; return .array(items) }
            while true {
                items.append(try parseValue())
                lex.skipWhitespace()
                guard let c = lex.next else { throw lex.fail("unterminated array") }
                if c == UInt8(ascii: ",") { lex.at += 1; continue }
                if c == UInt8(ascii: "]") { lex.at += 1; return .array(items) }
                throw lex.fail("expected ',' or ']'")
            }
        case UInt8(ascii: "{"):
            depth += 1
            guard depth <= maxDepth else { throw lex.fail("nesting deeper than \(maxDepth)") }
            defer { depth -= 1 }
            lex.at += 1
            var members: [(key: String, value: OrderedJSON)] = []
            // A set beside the ordered list: a linear scan per member made an 80k-member
            // object quadratic (19 s on the I/O thread).
            var seen: Set<String> = []
            lex.skipWhitespace()
            if lex.next == UInt8(ascii: "}") { lex.at += 1; return .object(members) }
            while true {
                lex.skipWhitespace()
                guard lex.next == UInt8(ascii: "\"") else { throw lex.fail("expected a member name") }
                let keyAt = lex.at
                let key = try lex.string()
                if !seen.insert(key).inserted {
                    throw JSONSyntaxError(what: "duplicate member \(key.debugDescription)", offset: keyAt)
                }
                lex.skipWhitespace()
                guard lex.next == UInt8(ascii: ":") else { throw lex.fail("expected ':'") }
                lex.at += 1
                members.append((key, try parseValue()))
                lex.skipWhitespace()
                guard let c = lex.next else { throw lex.fail("unterminated object") }
                if c == UInt8(ascii: ",") { lex.at += 1; continue }
                if c == UInt8(ascii: "}") { lex.at += 1; return .object(members) }
                throw lex.fail("expected ',' or '}'")
            }
        default:
            throw lex.fail("unexpected character")
        }
    }
}
