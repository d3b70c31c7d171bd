/// String escapes that are lone UTF-16 surrogates (`"\ud83d"`): JSON's grammar allows them
/// but no Unicode string holds one (RFC 8259 §8.2), so the JSON decoder refuses the whole
/// payload, id and all. A keyboard buffer cut in the middle of an emoji produces exactly
/// this, so the request decoder looks for them when a payload does not parse, to answer
/// `bad_field` naming the member, with the id (PROTOCOL.md §10.3).
///
/// One linear pass over the bytes, no recursion (nesting is tracked by a counter), one copy
/// of the payload: bounded by the frame size whatever the input.
enum LoneSurrogates {
    struct Found: Equatable {
        /// The payload with every lone-surrogate escape replaced by `\uFFFD` (same length).
        var repaired: [UInt8]
        /// The top-level member whose name or value holds the first one, as written in the
        /// payload (escapes not decoded); nil when it is not inside a top-level member.
        var member: String?
        /// The first one's escape as written, e.g. `\ud83d`.
        var escape: String
    }

    /// The lone surrogates of `bytes`, or nil when there are none.
    static func find(_ bytes: some Collection<UInt8>) -> Found? {
        let b = Array(bytes)
        var out: [UInt8]?
        var first: (escape: String, inKey: Bool)?
        var member: String?
        var firstMember: String?
        // Structure outside strings: nesting depth, whether the top level is an object,
        // whether the next string at depth 1 is a member name.
        var depth = 0, topIsObject = false, expectKey = false
        var inString = false, isKey = false, keyStart = 0
        var i = 0
        while i < b.count {
            let c = b[i]
            guard inString else {
                switch c {
                case UInt8(ascii: "\""):
                    inString = true
                    isKey = depth == 1 && topIsObject && expectKey
                    if isKey {
                        keyStart = i + 1
                        expectKey = false
                    }
                case UInt8(ascii: "{"):
                    depth += 1
                    if depth == 1 {
                        topIsObject = true
                        expectKey = true
                    }
                case UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
                case UInt8(ascii: ","): if depth == 1 { expectKey = true }
                default: break
                }
                i += 1
                continue
            }
            if c == UInt8(ascii: "\"") {
                inString = false
                if isKey {
                    member = String(decoding: b[keyStart..<i], as: UTF8.self)
                    if let f = first, f.inKey, firstMember == nil { firstMember = member }
                }
                i += 1
                continue
            }
            guard c == UInt8(ascii: "\\") else {
                i += 1
                continue
            }
            guard i + 5 < b.count, b[i + 1] == UInt8(ascii: "u"), let unit = hex4(b, i + 2) else {
                i += 2  // another escape: skip the escaped byte (a quote does not end the string)
                continue
            }
            if (0xD800..<0xDC00).contains(unit), i + 11 < b.count, b[i + 6] == UInt8(ascii: "\\"), b[i + 7] == UInt8(ascii: "u"),
               let low = hex4(b, i + 8), (0xDC00..<0xE000).contains(low) {
                i += 12  // a pair: one character
                continue
            }
            if (0xD800..<0xE000).contains(unit) {
                if first == nil {
                    first = (String(decoding: b[i..<i + 6], as: UTF8.self), isKey)
                    if !isKey { firstMember = depth >= 1 && topIsObject ? member : nil }
                }
                if out == nil { out = b }
                out!.replaceSubrange(i + 2..<i + 6, with: "FFFD".utf8)
            }
            i += 6
        }
        guard let out, let first else { return nil }
        return Found(repaired: out, member: firstMember, escape: first.escape)
    }

    /// The value of four hex digits at `at`, or nil.
    private static func hex4(_ b: [UInt8], _ at: Int) -> Int? {
        guard at + 4 <= b.count else { return nil }
        var v = 0
        for k in at..<at + 4 {
            let c = b[k]
            let d: Int
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = Int(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = Int(c - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = Int(c - UInt8(ascii: "A")) + 10
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }
}
