/// The lexical rules of JSON text (RFC 8259): whitespace, the three literals, numbers, and
/// strings with their escapes, surrogate pairs and UTF-8 check.
///
/// Two parsers build on it and must agree on what JSON text is: the protocol's `JSONValue`
/// (SLMProtocol: every request payload) and the schemas' `OrderedJSON` (SLMConstraint).
/// They differ in what they build from it (a dictionary or members in order, typed numbers
/// or their text) and in the structure they accept (duplicate members, trailing commas,
/// nesting), so each keeps its own recursive descent; the tokens are read here, once.
///
/// Reads `bytes` from `at` on; every error names what is wrong and the byte offset, never
/// the text itself (a payload may be a user's prompt).
public struct JSONLexer {
    public let bytes: UnsafeBufferPointer<UInt8>
    /// Offset of the next byte to read.
    public var at = 0

    public init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// The next byte, nil at the end.
    public var next: UInt8? { at < bytes.count ? bytes[at] : nil }

    public func fail(_ what: String) -> JSONSyntaxError { JSONSyntaxError(what: what, offset: at) }

    public mutating func skipWhitespace() {
        while at < bytes.count {
            switch bytes[at] {
            case 0x20, 0x0A, 0x0D, 0x09: at += 1
            default: return
            }
        }
    }

    /// Reads `word` (`true`, `false` or `null`) at `at`.
    public mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
        let n = word.utf8CodeUnitCount
        guard bytes.count - at >= n else { throw fail("unknown literal") }
        for k in 0..<n where bytes[at + k] != word.utf8Start[k] { throw fail("unknown literal") }
        at += n
    }

    /// Reads a number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. A leading
    /// zero stands alone, so `01` is the number 0 followed by something the caller refuses.
    public mutating func number() throws(JSONSyntaxError) -> JSONNumber {
        let start = at
        let negative = bytes[at] == UInt8(ascii: "-")
        if negative { at += 1 }
        func isDigit(_ i: Int) -> Bool { i < bytes.count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9") }
        let intStart = at
        if isDigit(at) && bytes[at] == UInt8(ascii: "0") {
            at += 1
        } else {
            while isDigit(at) { at += 1 }
        }
        guard at > intStart else { throw fail("a number without digits") }
        let intEnd = at
        var fraction = at..<at
        if at < bytes.count && bytes[at] == UInt8(ascii: ".") {
            at += 1
            let from = at
            while isDigit(at) { at += 1 }
            guard at > from else { throw fail("a number without digits after '.'") }
            fraction = from..<at
        }
        var exponent = 0  // saturated: beyond ±10^6 no number is an Int64, and Double reads the text
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
        return JSONNumber(text: start..<at, negative: negative, integer: intStart..<intEnd, fraction: fraction,
                          exponent: exponent)
    }

    /// Reads a string, from its opening quote. Raw control characters are refused (RFC 8259
    /// §7), and so are invalid UTF-8 and `\u` escapes that are half a surrogate pair.
    public mutating func string() throws(JSONSyntaxError) -> String {
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
        // Never longer than the escaped text, so bounded by the input.
        var out = Array(bytes[start..<at])
        while at < bytes.count {
            let c = bytes[at]
            if c == Self.quote {
                at += 1
                return try out.withUnsafeBufferPointer { (b) throws(JSONSyntaxError) in try text(b) }
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

    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

    /// The value of the four hex digits at `i`.
    private func hex4(_ i: Int) throws(JSONSyntaxError) -> UInt32 {
        guard bytes.count - i >= 4 else { throw fail("short \\u escape") }
        var v: UInt32 = 0
        for k in i..<(i + 4) {
            guard let d = Self.hexValue(bytes[k]) else { throw fail("bad \\u escape") }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    /// The value of a hex digit (either case), nil for any other byte: `\\u` escapes here and
    /// in the schema automaton's string states.
    @inline(__always)
    public static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private func text(_ b: UnsafeBufferPointer<UInt8>) throws(JSONSyntaxError) -> String {
        guard let s = String(validating: b, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
        return s
    }
}

/// Where a number's parts lie in the lexer's bytes.
public struct JSONNumber: Sendable {
    /// The whole number as written.
    public let text: Range<Int>
    public let negative: Bool
    /// The digits before the point, and after it (empty without one).
    public let integer: Range<Int>
    public let fraction: Range<Int>
    /// The exponent's value, saturated at ±1,000,000 (0 without one).
    public let exponent: Int

    /// The number, when its exact decimal value is an integer that fits in `Int64`
    /// (`12`, `12.0`, `1.5e3`): no integer a client writes passes through `Double`.
    public func exactInteger(in bytes: UnsafeBufferPointer<UInt8>) -> Int64? {
        // The significant digits run from the first non-zero one to the last non-zero one,
        // across the point; `scale` is the power of ten of the last.
        func digit(_ k: Int) -> UInt8 {
            bytes[k < integer.count ? integer.lowerBound + k : fraction.lowerBound + k - integer.count] - UInt8(ascii: "0")
        }
        let n = integer.count + fraction.count
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

/// Why JSON text is not valid: what, and the byte offset where it was found.
public struct JSONSyntaxError: Error, Sendable, Equatable {
    public let what: String
    public let offset: Int

    public init(what: String, offset: Int) {
        self.what = what
        self.offset = offset
    }
}
