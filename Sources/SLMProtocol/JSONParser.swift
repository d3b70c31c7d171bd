/// JSON text (RFC 8259) to `JSONValue`, in one pass over the bytes.
///
/// Every request payload goes through here on the I/O thread before its prompt can start.
/// `JSONDecoder` took ~0.14 ms of CPU for a 16-word `complete` request (perf, 100 requests,
/// cold caches between them: a third of the I/O thread's time before the engine got the
/// request): decoding an open `JSONValue` through `Decodable` tries each container kind in
/// turn, and every miss is a thrown error. This parser reads the bytes directly.
///
/// It accepts what the v1 parser (`JSONDecoder`) accepted, so no client sees a change
/// (docs/PROTOCOL.md §4): one trailing comma in an array or object, a leading UTF-8 byte
/// order mark, the first of duplicate member names, nesting up to `maxNesting`, integers
/// that fit in `Int64` as `.int` and integral numbers such as `12.0` or `1e2` as `.int` too.
/// `Tests/SLMProtocolTests/JSONParserTests` checks it against `JSONDecoder` on generated and
/// damaged payloads. Where they differ this one is stricter or exact: invalid UTF-8 inside a
/// string is refused (v1 let some through; request payloads are checked before parsing
/// anyway), and a number is an integer by its exact decimal value (v1 went through
/// `Decimal`, 38 digits and exponents within ±128: `1e-200` was the integer 0).
struct JSONParser {
    /// Arrays and objects nest at most this deep (the v1 parser's limit); deeper payloads are
    /// `bad_json`. It bounds the parser's recursion, and that of everything that walks a
    /// `JSONValue` afterwards.
    static let maxNesting = 512

    private let bytes: UnsafeBufferPointer<UInt8>
    private var at = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The one JSON value `bytes` holds (whitespace around it allowed), or `bad_json`
    /// naming what is wrong and the byte offset where it was found.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(ProtocolError) -> JSONValue {
        var parser = JSONParser(bytes)
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { parser.at = 3 }
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.at == bytes.count else { throw parser.fail("unexpected content after the value") }
        return value
    }

    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

    private func fail(_ what: String) -> ProtocolError {
        // The offset, never the bytes: the payload may be a prompt.
        ProtocolError(.badJSON, "payload is not valid JSON: \(what) at byte \(at)")
    }

    private mutating func skipWhitespace() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x0A, 0x0D, 0x09: at += 1
            default: return
            }
        }
    }

    private mutating func value(depth: Int) throws(ProtocolError) -> JSONValue {
        skipWhitespace()
        guard at < bytes.count else { throw fail("unexpected end") }
        switch bytes[at] {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case Self.quote: return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(ProtocolError) {
        let n = word.utf8CodeUnitCount
        guard bytes.count - at >= n else { throw fail("unknown literal") }
        for k in 0..<n where bytes[at + k] != word.utf8Start[k] { throw fail("unknown literal") }
        at += n
    }

    /// After a member or element: true at the container's end (`close`, or one trailing
    /// comma before it), false after a comma with more to come.
    private mutating func endsAfterItem(_ close: UInt8) throws(ProtocolError) -> Bool {
        skipWhitespace()
        guard at < bytes.count else { throw fail("unexpected end") }
        if bytes[at] == close { at += 1; return true }
        guard bytes[at] == UInt8(ascii: ",") else { throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))'") }
        at += 1
        skipWhitespace()
        if at < bytes.count && bytes[at] == close { at += 1; return true }
        return false
    }

    private mutating func array(depth: Int) throws(ProtocolError) -> JSONValue {
        guard depth <= Self.maxNesting else { throw fail("arrays and objects nested deeper than \(Self.maxNesting)") }
        at += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if at < bytes.count && bytes[at] == UInt8(ascii: "]") { at += 1; return .array(items) }
        repeat { items.append(try value(depth: depth)) } while try !endsAfterItem(UInt8(ascii: "]"))
        return .array(items)
    }

    private mutating func object(depth: Int) throws(ProtocolError) -> JSONValue {
        guard depth <= Self.maxNesting else { throw fail("arrays and objects nested deeper than \(Self.maxNesting)") }
        at += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if at < bytes.count && bytes[at] == UInt8(ascii: "}") { at += 1; return .object(members) }
        repeat {
            skipWhitespace()
            guard at < bytes.count && bytes[at] == Self.quote else { throw fail("expected a member name in quotes") }
            let name = try string()
            skipWhitespace()
            guard at < bytes.count && bytes[at] == UInt8(ascii: ":") else { throw fail("expected ':' after a member name") }
            at += 1
            let item = try value(depth: depth)
            if members[name] == nil { members[name] = item }  // the first of duplicates, as v1
        } while try !endsAfterItem(UInt8(ascii: "}"))
        return .object(members)
    }

    /// A string starting at the opening quote. Raw control characters are refused (RFC 8259
    /// §7), and so are invalid UTF-8 and `\u` escapes that are half a surrogate pair.
    private mutating func string() throws(ProtocolError) -> String {
        at += 1
        let start = at
        while at < bytes.count {  // most strings have no escape: one scan, one copy
            let c = bytes[at]
            if c == Self.quote {
                let s = try text(UnsafeBufferPointer(rebasing: bytes[start..<at]))
                at += 1
                return s
            }
            if c == Self.backslash { break }
            guard c >= 0x20 else { throw fail("control character in a string") }
            at += 1
        }
        // Never longer than the escaped text, so bounded by the payload.
        var out = Array(bytes[start..<at])
        while at < bytes.count {
            let c = bytes[at]
            if c == Self.quote {
                at += 1
                return try out.withUnsafeBufferPointer { (b) throws(ProtocolError) in try text(b) }
            }
            guard c >= 0x20 else { throw fail("control character in a string") }
            guard c == Self.backslash else { out.append(c); at += 1; continue }
            guard at + 1 < bytes.count else { break }
            at += 1
            switch bytes[at] {
            case Self.quote: out.append(Self.quote)
            case Self.backslash: out.append(Self.backslash)
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "/"))
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(at + 1)
                at += 4
                if (0xD800..<0xDC00).contains(scalar) {
                    guard bytes.count - at > 6, bytes[at + 1] == Self.backslash, bytes[at + 2] == UInt8(ascii: "u"),
                          case let low = try hex4(at + 3), (0xDC00..<0xE000).contains(low) else {
                        throw fail("\\u escape of a lone surrogate")
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    at += 6
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw fail("\\u escape of a lone surrogate")
                }
                out.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar)!)!)
            default: throw fail("unknown escape")
            }
            at += 1
        }
        throw fail("unterminated string")
    }

    /// The value of the four hex digits at `i`.
    private func hex4(_ i: Int) throws(ProtocolError) -> UInt32 {
        guard bytes.count - i >= 4 else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for k in i..<(i + 4) {
            let c = bytes[k]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw fail("bad \\u escape")
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    private func text(_ b: UnsafeBufferPointer<UInt8>) throws(ProtocolError) -> String {
        guard let s = String(validating: b, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
        return s
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. One whose exact
    /// decimal value is an integer in `Int64`'s range is `.int`, exactly (`12`, `12.0`,
    /// `1.5e3`); any other the nearest `Double`, an error when out of its range (`1e400`).
    /// So no integer a client writes passes through `Double`.
    private mutating func number() throws(ProtocolError) -> JSONValue {
        let start = at
        let negative = bytes[at] == UInt8(ascii: "-")
        if negative { at += 1 }
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9") }
        let intStart = at
        while isDigit(at) { at += 1 }
        let intEnd = at
        guard intEnd > intStart else { throw fail("a number without digits") }
        // A leading zero stands alone: "01" is "0" followed by something unexpected.
        if bytes[intStart] == UInt8(ascii: "0") && intEnd - intStart > 1 { at = intStart + 1; throw fail("unexpected content after the value") }
        var fracStart = at, fracEnd = at
        if at < bytes.count && bytes[at] == UInt8(ascii: ".") {
            at += 1
            fracStart = at
            while isDigit(at) { at += 1 }
            fracEnd = at
            guard fracEnd > fracStart else { throw fail("a number without digits after '.'") }
        }
        var exponent = 0  // saturated: beyond ±10^6 nothing is an Int64 anyway
        if at < bytes.count && (bytes[at] == UInt8(ascii: "e") || bytes[at] == UInt8(ascii: "E")) {
            at += 1
            var sign = 1
            if at < bytes.count && (bytes[at] == UInt8(ascii: "+") || bytes[at] == UInt8(ascii: "-")) {
                if bytes[at] == UInt8(ascii: "-") { sign = -1 }
                at += 1
            }
            let from = at
            while isDigit(at) {
                exponent = min(exponent * 10 + Int(bytes[at] - UInt8(ascii: "0")), 1_000_000)
                at += 1
            }
            guard at > from else { throw fail("a number without exponent digits") }
            exponent *= sign
        }
        if let exact = Self.exactInteger(bytes, int: intStart..<intEnd, fraction: fracStart..<fracEnd,
                                         exponent: exponent, negative: negative) {
            return .int(exact)
        }
        guard let d = Double(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<at]), as: UTF8.self)),
              d.isFinite else {
            throw fail("a number out of range")
        }
        return .double(d)
    }

    /// The number with digits `int` and `fraction` times 10^`exponent`, when that is an
    /// integer that fits in `Int64`.
    private static func exactInteger(_ bytes: UnsafeBufferPointer<UInt8>, int: Range<Int>, fraction: Range<Int>,
                                     exponent: Int, negative: Bool) -> Int64? {
        // The significant digits run from the first non-zero one to the last non-zero one,
        // across the point; `scale` is the power of ten of the last.
        func digit(_ k: Int) -> UInt8 { bytes[k < int.count ? int.lowerBound + k : fraction.lowerBound + k - int.count] - UInt8(ascii: "0") }
        let n = int.count + fraction.count
        var first = 0, last = n - 1
        while first < n && digit(first) == 0 { first += 1 }
        if first == n { return 0 }
        while digit(last) == 0 { last -= 1 }
        let scale = exponent - fraction.count + (n - 1 - last)
        guard scale >= 0, last - first + 1 + scale <= 19 else { return nil }
        var v: Int64 = 0
        for k in first...last {
            let d = Int64(digit(k))
            guard case let (m, false) = v.multipliedReportingOverflow(by: 10),
                  case let (s, false) = negative ? m.subtractingReportingOverflow(d) : m.addingReportingOverflow(d) else { return nil }
            v = s
        }
        for _ in 0..<scale {
            guard case let (m, false) = v.multipliedReportingOverflow(by: 10) else { return nil }
            v = m
        }
        return v
    }
}
