import SLMConstraint

/// Reference twin of `SchemaAutomaton`: a plain recursive-descent matcher that reads the
/// schema JSON directly (not the compiled tables) and implements the documented grammar.
public struct ReferenceMatcher {
    static let intCap: Int64 = 999_999_999_999_999
    static let big: Int64 = 1_000_000_000_000_000_000
    let b: [UInt8]
    var i = 0

    /// Whether `bytes` is exactly one value the documented grammar admits for `schema`.
    public static func accepts(_ schema: OrderedJSON, _ bytes: [UInt8]) -> Bool {
        var m = ReferenceMatcher(b: bytes)
        return m.value(schema) && m.i == bytes.count
    }

    var peek: UInt8? { i < b.count ? b[i] : nil }
    mutating func eat(_ c: Character) -> Bool {
        if i < b.count && b[i] == c.asciiValue! { i += 1; return true }
        return false
    }
    func isDigit(_ c: UInt8?) -> Bool { c.map { $0 >= 48 && $0 <= 57 } ?? false }

    static func types(_ s: OrderedJSON) -> [String] {
        switch s["type"] {
        case .string(let t)?: return [t]
        case .array(let a)?: return a.compactMap { if case .string(let t) = $0 { return t }; return nil }
        default: return []
        }
    }

    static func int(_ v: OrderedJSON?) -> Int64? {
        if case .number(let s)? = v { return Int64(s) }
        return nil
    }

    static func bounds(_ s: OrderedJSON) -> (Int64, Int64) {
        let lo = int(s["minimum"]), hi = int(s["maximum"])
        return (lo ?? ((hi ?? 0) < -intCap ? -big : -intCap), hi ?? ((lo ?? 0) > intCap ? big : intCap))
    }

    mutating func value(_ s: OrderedJSON) -> Bool {
        var lits: [OrderedJSON]? = nil
        if case .array(let e)? = s["enum"] { lits = e }
        if let c = s["const"] { lits = [c] }
        if let lits {
            // Longest compact spelling that matches here (a shorter numeric one followed by
            // a digit could never continue validly).
            var best = -1
            for v in lits {
                var sp: [UInt8] = []
                v.appendCompact(to: &sp)
                if i + sp.count <= b.count && Array(b[i..<i + sp.count]) == sp { best = max(best, sp.count) }
            }
            guard best >= 0 else { return false }
            i += best
            return true
        }
        let t = Self.types(s)
        guard let c = peek else { return false }
        switch c {
        case UInt8(ascii: "{") where t.contains("object"): return object(s)
        case UInt8(ascii: "[") where t.contains("array"): return array(s)
        case UInt8(ascii: "\"") where t.contains("string"): return string(s)
        case UInt8(ascii: "t") where t.contains("boolean"): return word("true")
        case UInt8(ascii: "f") where t.contains("boolean"): return word("false")
        case UInt8(ascii: "n") where t.contains("null"): return word("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            if t.contains("number") { return number() }
            if t.contains("integer") { return integer(s) }
            return false
        default: return false
        }
    }

    mutating func word(_ w: String) -> Bool {
        for ch in w where !eat(ch) { return false }
        return true
    }

    mutating func integer(_ s: OrderedJSON) -> Bool {
        let neg = eat("-")
        let start = i
        while isDigit(peek) { i += 1 }
        let digits = Array(b[start..<i])
        guard !digits.isEmpty, digits.count <= 19 else { return false }
        if digits[0] == 48 && (digits.count > 1 || neg) { return false }
        let m = UInt64(String(decoding: digits, as: UTF8.self))!
        guard m <= UInt64(Self.big) else { return false }
        let v = neg ? -Int64(m) : Int64(m)
        let (lo, hi) = Self.bounds(s)
        return v >= lo && v <= hi
    }

    mutating func digits(max: Int) -> Int? {
        let start = i
        while isDigit(peek) { i += 1 }
        let n = i - start
        return n >= 1 && n <= max ? n : nil
    }

    mutating func number() -> Bool {
        _ = eat("-")
        if eat("0") {
            if isDigit(peek) { return false }
        } else {
            guard digits(max: SchemaAutomaton.maxNumberDigits) != nil else { return false }
        }
        if eat(".") { guard digits(max: SchemaAutomaton.maxNumberDigits) != nil else { return false } }
        if eat("e") || eat("E") {
            if !eat("+") { _ = eat("-") }
            guard digits(max: SchemaAutomaton.maxExponentDigits) != nil else { return false }
        }
        return true
    }

    mutating func string(_ s: OrderedJSON) -> Bool {
        guard eat("\"") else { return false }
        let max = Self.int(s["maxLength"]).map(Int.init) ?? Int.max
        var chars = 0
        while let c = peek {
            if c == UInt8(ascii: "\"") { i += 1; return chars <= max }
            chars += 1
            if c == UInt8(ascii: "\\") {
                i += 1
                guard let e = peek else { return false }
                i += 1
                if "\"\\/bfnrt".utf8.contains(e) { continue }
                guard e == UInt8(ascii: "u"), i + 4 <= b.count else { return false }
                let hex = String(decoding: b[i..<i + 4], as: UTF8.self)
                guard let v = UInt32(hex, radix: 16), hex.allSatisfy(\.isHexDigit), !(0xD800...0xDFFF).contains(v) else { return false }
                i += 4
                continue
            }
            guard c >= 0x20 else { return false }
            let n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2
            guard i + n <= b.count, String(validating: b[i..<i + n], as: UTF8.self) != nil else { return false }
            i += n
        }
        return false
    }

    mutating func object(_ s: OrderedJSON) -> Bool {
        guard eat("{") else { return false }
        var props: [(String, OrderedJSON)] = []
        if case .object(let p)? = s["properties"] { props = p.map { ($0.key, $0.value) } }
        var required: Set<String> = []
        if case .array(let r)? = s["required"] { for case .string(let n) in r { required.insert(n) } }
        var last = -1
        var seen: Set<String> = []
        if eat("}") { return required.isEmpty }
        while true {
            var found = -1
            for (k, p) in props.enumerated() {
                var key: [UInt8] = []
                OrderedJSON.string(p.0).appendCompact(to: &key)
                key.append(UInt8(ascii: ":"))
                if i + key.count <= b.count && Array(b[i..<i + key.count]) == key { found = k; i += key.count; break }
            }
            guard found > last else { return false }
            last = found
            seen.insert(props[found].0)
            guard value(props[found].1) else { return false }
            if eat(",") { continue }
            guard eat("}") else { return false }
            return required.isSubset(of: seen)
        }
    }

    mutating func array(_ s: OrderedJSON) -> Bool {
        guard eat("["), let items = s["items"] else { return false }
        let max = Self.int(s["maxItems"]).map(Int.init) ?? Int.max
        if eat("]") { return true }
        var n = 0
        while true {
            guard value(items) else { return false }
            n += 1
            if eat(",") { continue }
            return eat("]") && n <= max
        }
    }
}

/// Seeded random schemas over the supported subset, and random instances of them.
public struct SchemaGen {
    public var rng: TestRNG

    public init(seed: UInt64) { rng = TestRNG(seed: seed) }

    public mutating func int(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(rng.next() % UInt64(r.count)) }
    public mutating func chance(_ p: Double) -> Bool { Double(rng.nextUnit()) < p }
    public mutating func pick<T>(_ a: [T]) -> T { a[int(0...a.count - 1)] }

    static let names = ["a", "b", "id", "name", "x\"y", "é", "value", "on", "a/b", "n2"]
    static let pieces = ["a", "Z", " ", "é", "日", "😀", "\\n", "\\\"", "\\\\", "\\/", "\\u00e9", "\\t", "~", "\u{7F}", "0", "{", ","]
    static let enumStrings = ["on", "off", "o", "turn_on", "x\"y", "日本", "", "a\\b"]
    static let enumOthers: [OrderedJSON] = [.number("1"), .number("12"), .number("-3"), .number("2.5"), .null, .bool(true), .bool(false)]

    public mutating func schema(depth: Int = 0) -> OrderedJSON {
        let scalar = ["string", "integer", "number", "boolean", "null", "enum", "const", "union"]
        let kind = depth >= 3 ? pick(scalar) : pick(scalar + ["object", "object", "object", "array"])
        var m: [(key: String, value: OrderedJSON)] = []
        switch kind {
        case "object":
            m.append(("type", .string("object")))
            var names: [String] = []
            for _ in 0..<int(0...4) { let n = pick(Self.names); if !names.contains(n) { names.append(n) } }
            m.append(("properties", .object(names.map { ($0, schema(depth: depth + 1)) })))
            let req = names.filter { _ in chance(0.5) }
            if !req.isEmpty || chance(0.3) { m.append(("required", .array(req.map { .string($0) }))) }
            if chance(0.5) { m.append(("additionalProperties", .bool(false))) }
        case "array":
            m.append(("type", .string("array")))
            m.append(("items", schema(depth: depth + 1)))
            if chance(0.6) { m.append(("maxItems", .number(String(int(0...3))))) }
        case "string":
            m.append(("type", .string("string")))
            if chance(0.5) { m.append(("maxLength", .number(String(int(0...5))))) }
        case "integer":
            m.append(("type", .string("integer")))
            m += integerBounds()
        case "enum":
            var vals: [OrderedJSON] = []
            for _ in 0..<int(1...5) {
                let v: OrderedJSON = chance(0.6) ? .string(pick(Self.enumStrings)) : pick(Self.enumOthers)
                if !vals.contains(v) { vals.append(v) }
            }
            m.append(("enum", .array(vals)))
        case "const":
            m.append(("const", chance(0.5) ? .string(pick(Self.enumStrings)) : pick(Self.enumOthers)))
        case "union":
            var ts: [String] = []
            for _ in 0..<int(2...3) { let t = pick(["string", "integer", "null", "boolean", "number"]); if !ts.contains(t) { ts.append(t) } }
            m.append(("type", .array(ts.map { .string($0) })))
            if ts.contains("string") && chance(0.5) { m.append(("maxLength", .number(String(int(0...4))))) }
            if ts.contains("integer") && !ts.contains("number") { m += integerBounds() }
        default:
            m.append(("type", .string(kind)))
        }
        return .object(m)
    }

    mutating func integerBounds() -> [(key: String, value: OrderedJSON)] {
        var m: [(key: String, value: OrderedJSON)] = []
        let a = int(-300...300), b = int(-300...300)
        switch int(0...4) {
        case 0: break
        case 1: m.append(("minimum", .number(String(a))))
        case 2: m.append(("maximum", .number(String(a))))
        case 3: m += [("minimum", .number(String(min(a, b)))), ("maximum", .number(String(max(a, b))))]
        default: m += [("minimum", .number(String(min(a, b) * 1000 - 7))), ("maximum", .number(String(max(a, b) * 1000 + 3)))]
        }
        return m
    }

    /// Which invalid change to make (at most once per instance).
    public enum Poison: CaseIterable { case none, intRange, tooLong, notInEnum, keyOrder, missingRequired, unknownKey, tooManyItems }

    /// A random instance, compact and in schema key order; with `poison`, one random place is
    /// made invalid in that way and `poisoned` is set (left false when the schema has no place for it).
    public mutating func instance(_ s: OrderedJSON, poison: Poison = .none, poisoned: inout Bool) -> [UInt8] {
        var out: [UInt8] = []
        func arm(_ p: Poison) -> Bool {
            if poison == p && !poisoned && chance(0.5) { poisoned = true; return true }
            return false
        }
        var lits: [OrderedJSON]? = nil
        if case .array(let e)? = s["enum"] { lits = e }
        if let c = s["const"] { lits = [c] }
        if let lits {
            if arm(.notInEnum) { out += Array("\"zz\\u0041q\"".utf8); return out }
            pick(lits).appendCompact(to: &out)
            return out
        }
        let t = pick(ReferenceMatcher.types(s))
        switch t {
        case "object":
            var props: [(String, OrderedJSON)] = []
            if case .object(let p)? = s["properties"] { props = p.map { ($0.key, $0.value) } }
            var req: Set<String> = []
            if case .array(let r)? = s["required"] { for case .string(let n) in r { req.insert(n) } }
            var members: [[UInt8]] = []
            var dropped = false
            for (name, sub) in props where req.contains(name) || chance(0.5) {
                if req.contains(name) && !dropped && arm(.missingRequired) { dropped = true; continue }
                var m: [UInt8] = []
                OrderedJSON.string(name).appendCompact(to: &m)
                m.append(UInt8(ascii: ":"))
                m += instance(sub, poison: poison, poisoned: &poisoned)
                members.append(m)
            }
            if members.count >= 2 && arm(.keyOrder) { members.reverse() }
            if arm(.unknownKey) { members.insert(Array("\"zz_unknown\":null".utf8), at: int(0...members.count)) }
            out.append(UInt8(ascii: "{"))
            for (k, m) in members.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out += m
            }
            out.append(UInt8(ascii: "}"))
        case "array":
            let max = ReferenceMatcher.int(s["maxItems"]).map(Int.init) ?? 4
            var n = int(0...min(max, 4))
            if s["maxItems"] != nil && arm(.tooManyItems) { n = max + 1 }
            out.append(UInt8(ascii: "["))
            for k in 0..<n {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out += instance(s["items"]!, poison: poison, poisoned: &poisoned)
            }
            out.append(UInt8(ascii: "]"))
        case "string":
            let max = ReferenceMatcher.int(s["maxLength"]).map(Int.init) ?? 8
            var n = int(0...min(max, 8))
            if s["maxLength"] != nil && arm(.tooLong) { n = max + 1 }
            out.append(UInt8(ascii: "\""))
            for _ in 0..<n { out += Array(pick(Self.pieces).utf8) }
            out.append(UInt8(ascii: "\""))
        case "integer":
            let (lo, hi) = ReferenceMatcher.bounds(s)
            var v: Int64
            switch int(0...3) {
            case 0: v = lo
            case 1: v = hi
            default: v = lo + Int64(rng.next() % UInt64(hi - lo + 1))
            }
            if arm(.intRange) { v = chance(0.5) ? hi + 1 : lo - 1 }
            out += Array(String(v).utf8)
        case "number":
            var s = chance(0.3) ? "-" : ""
            s += chance(0.3) ? "0" : String(int(1...99999))
            if chance(0.5) { s += "." + String(int(0...999)) }
            if chance(0.3) { s += pick(["e", "E"]) + pick(["", "+", "-"]) + String(int(0...300)) }
            out += Array(s.utf8)
        case "boolean": out += Array((chance(0.5) ? "true" : "false").utf8)
        default: out += Array("null".utf8)
        }
        return out
    }
}

/// A smart-home command schema (8 values per enum): what the mask and constrained
/// generation tests decode against.
public enum IntentSchema {
    public static let actions = ["turn_on", "turn_off", "set", "open", "close", "lock", "unlock", "status"]
    public static let devices = ["light", "thermostat", "fan", "door", "window", "blinds", "tv", "speaker"]
    public static let rooms = ["living_room", "bedroom", "kitchen", "bathroom", "office", "garage", "hallway", "garden"]
    public static func quoted(_ a: [String]) -> String { a.map { "\"\($0)\"" }.joined(separator: ",") }
    public static let text = """
        {"type":"object","properties":{
          "action":{"type":"string","enum":[\(quoted(actions))]},
          "device":{"type":"string","enum":[\(quoted(devices))]},
          "room":{"type":"string","enum":[\(quoted(rooms))]},
          "value":{"type":["integer","null"],"minimum":0,"maximum":100}},
         "required":["action","device","room","value"],"additionalProperties":false}
        """
}
