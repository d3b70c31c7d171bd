/// Where the top-level members of compact JSON object text are, for per-field figures
/// (confidence, departures) computed from byte offsets of generated tokens.
///
/// Works on the compact layout constrained decoding writes (no whitespace outside strings),
/// and on unfinished text, since a departure is found in the middle of generation.
public enum JSONSpans {
    /// One member of a top-level object: `text[valueStart..<end]` is its value.
    public struct Member: Sendable, Equatable {
        public var key: String
        public var valueStart: Int
        public var end: Int
    }

    /// Whether `b` is an ASCII digit.
    public static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    /// Whether a JSON number may start with `b` (a digit or a minus sign).
    public static func startsNumber(_ b: UInt8) -> Bool { isDigit(b) || b == UInt8(ascii: "-") }

    /// The members of a complete compact object, in order; nil when `b` is not one.
    public static func members(_ b: [UInt8]) -> [Member]? {
        let s = scan(b)
        return s.closed ? s.members : nil
    }

    /// The member whose value is being written at the end of the unfinished object `b`, and
    /// where that value starts; nil when `b` does not end inside a top-level member's value
    /// (it ends in a key, between members, or right after a closed string or container).
    public static func openValue(_ b: [UInt8]) -> (key: String, valueStart: Int)? { scan(b).open }

    /// Bytes the JSON value at the start of `b` takes: through the closing quote or bracket
    /// of a string, object or array, and for a bare number or literal through the byte
    /// after it (it is whole only once something follows). Nil when the value has not ended
    /// within `b`.
    public static func valueEnd(_ b: [UInt8]) -> Int? {
        guard let first = b.first else { return nil }
        var i = 0
        switch first {
        case UInt8(ascii: "\""):
            return skipString(b, &i) ? i : nil
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") { guard skipString(b, &i) else { return nil }; continue }
                if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
                if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { return i + 1 }
                }
                i += 1
            }
            return nil
        default:
            while i < b.count {
                if [UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), UInt8(ascii: "\""), 0x20, 0x0A, 0x0D, 0x09].contains(b[i]) {
                    return i + 1
                }
                i += 1
            }
            return nil
        }
    }

    /// At an opening quote: moves `i` past the closing one; false if the string is unfinished.
    static func skipString(_ b: [UInt8], _ i: inout Int) -> Bool {
        i += 1
        while i < b.count {
            if b[i] == UInt8(ascii: "\\") { i += 2; continue }
            if b[i] == UInt8(ascii: "\"") { i += 1; return true }
            i += 1
        }
        return false
    }

    /// One pass over `b`: finished members, the start of an unfinished value, and whether the
    /// object was closed.
    static func scan(_ b: [UInt8]) -> (members: [Member], open: (key: String, valueStart: Int)?, closed: Bool) {
        var out: [Member] = []
        guard b.first == UInt8(ascii: "{") else { return (out, nil, false) }
        var i = 1
        if i < b.count, b[i] == UInt8(ascii: "}") { return (out, nil, true) }
        while i < b.count {
            guard b[i] == UInt8(ascii: "\"") else { return (out, nil, false) }
            let keyStart = i + 1
            guard skipString(b, &i), i < b.count, b[i] == UInt8(ascii: ":") else { return (out, nil, false) }
            let key = String(decoding: b[keyStart..<(i - 1)], as: UTF8.self)
            i += 1
            let start = i
            var depth = 0
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    guard skipString(b, &i) else { return (out, (key, start), false) }
                    // A closed top-level string value: nothing of it is still being written.
                    if depth == 0 && i == b.count { return (out, nil, false) }
                    continue
                }
                if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
                if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    if depth == 0 { break }
                    depth -= 1
                    if depth == 0 && i + 1 == b.count { return (out, nil, false) }
                }
                if c == UInt8(ascii: ","), depth == 0 { break }
                i += 1
            }
            guard i < b.count else { return (out, (key, start), false) }
            out.append(Member(key: key, valueStart: start, end: i))
            if b[i] == UInt8(ascii: "}") { return (out, nil, i + 1 == b.count) }
            i += 1
        }
        return (out, nil, false)
    }
}
