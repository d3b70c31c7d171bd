import SLMJSON

/// JSON text (RFC 8259) to `JSONValue`, in one pass over the bytes.
///
/// Every request payload goes through here on the I/O thread before its prompt can start.
/// `JSONDecoder` took ~0.13 ms of CPU for a 16-word `complete` request (perf, 100 requests,
/// cold caches between them: a third of the I/O thread's time before the engine got the
/// request): decoding an open `JSONValue` through `Decodable` tries each container kind in
/// turn, and every miss is a thrown error. This parser reads the bytes directly (its tokens
/// through `JSONLexer`, shared with the schemas' parser).
///
/// It accepts what the v1 parser (`JSONDecoder`) accepted, so no client sees a change
/// (docs/PROTOCOL.md §4): one trailing comma in an array or object, a leading UTF-8 byte
/// order mark, the first of duplicate member names, nesting up to `maxNesting`, integers
/// that fit in `Int64` as `.int` and integral numbers such as `12.0` or `1e2` as `.int` too.
/// `Tests/SLMProtocolTests/JSONParserTests` checks it against `JSONDecoder` on generated and
/// damaged payloads. Where they differ this one is stricter or exact: invalid UTF-8 inside a
/// string is refused (v1 let some through; request payloads are checked before parsing
/// anyway), and a number is an integer by its exact decimal value (v1 went through
/// `Decimal`, 38 digits and a bounded exponent: `-1e-400` was the integer 0).
struct JSONParser {
    /// Arrays and objects nest at most this deep (the v1 parser's limit); deeper payloads are
    /// `bad_json`. It bounds the parser's recursion, and that of everything that walks a
    /// `JSONValue` afterwards.
    static let maxNesting = 512

    private var lex: JSONLexer

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { lex = JSONLexer(bytes) }

    /// The one JSON value `bytes` holds (whitespace around it allowed), or `bad_json`
    /// naming what is wrong and the byte offset where it was found.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(ProtocolError) -> JSONValue {
        var parser = JSONParser(bytes)
        do throws(JSONSyntaxError) {
            if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { parser.lex.at = 3 }
            let value = try parser.value(depth: 0)
            parser.lex.skipWhitespace()
            guard parser.lex.next == nil else { throw parser.lex.fail("unexpected content after the value") }
            return value
        } catch {
            // The offset, never the bytes: the payload may be a prompt.
            throw ProtocolError(.badJSON, "payload is not valid JSON: \(error.what) at byte \(error.offset)")
        }
    }

    private mutating func value(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        lex.skipWhitespace()
        guard let c = lex.next else { throw lex.fail("unexpected end") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try lex.string())
        case UInt8(ascii: "t"): try lex.literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try lex.literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try lex.literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw lex.fail("unexpected character")
        }
    }

    /// A number whose exact decimal value is an integer in `Int64`'s range is `.int`,
    /// exactly (`12`, `12.0`, `1.5e3`); any other the nearest `Double`, an error when out of
    /// its range (`1e400`).
    private mutating func number() throws(JSONSyntaxError) -> JSONValue {
        let n = try lex.number()
        if let exact = n.exactInteger(in: lex.bytes) { return .int(exact) }
        guard let d = Double(String(decoding: UnsafeBufferPointer(rebasing: lex.bytes[n.text]), as: UTF8.self)),
              d.isFinite else {
            throw lex.fail("a number out of range")
        }
        return .double(d)
    }

    /// After a member or element: true at the container's end (`close`, or one trailing
    /// comma before it: a v1 leniency), false after a comma with more to come.
    private mutating func endsAfterItem(_ close: UInt8) throws(JSONSyntaxError) -> Bool {
        lex.skipWhitespace()
        guard let c = lex.next else { throw lex.fail("unexpected end") }
        if c == close { lex.at += 1; return true }
        guard c == UInt8(ascii: ",") else { throw lex.fail("expected ',' or '\(Character(Unicode.Scalar(close)))'") }
        lex.at += 1
        lex.skipWhitespace()
        if lex.next == close { lex.at += 1; return true }
        return false
    }

    private mutating func array(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        guard depth <= Self.maxNesting else { throw lex.fail("arrays and objects nested deeper than \(Self.maxNesting)") }
        lex.at += 1
        var items: [JSONValue] = []
        lex.skipWhitespace()
        if lex.next == UInt8(ascii: "]") { lex.at += 1; return .array(items) }
        repeat { items.append(try value(depth: depth)) } while try !endsAfterItem(UInt8(ascii: "]"))
        return .array(items)
    }

    private mutating func object(depth: Int) throws(JSONSyntaxError) -> JSONValue {
        guard depth <= Self.maxNesting else { throw lex.fail("arrays and objects nested deeper than \(Self.maxNesting)") }
        lex.at += 1
        var members: [String: JSONValue] = [:]
        lex.skipWhitespace()
        if lex.next == UInt8(ascii: "}") { lex.at += 1; return .object(members) }
        repeat {
            lex.skipWhitespace()
            guard lex.next == UInt8(ascii: "\"") else { throw lex.fail("expected a member name in quotes") }
            let name = try lex.string()
            lex.skipWhitespace()
            guard lex.next == UInt8(ascii: ":") else { throw lex.fail("expected ':' after a member name") }
            lex.at += 1
            let item = try value(depth: depth)
            if members[name] == nil { members[name] = item }  // the first of duplicates, as v1
        } while try !endsAfterItem(UInt8(ascii: "}"))
        return .object(members)
    }
}
