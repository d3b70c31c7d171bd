// Structure-aware input for the "schema" target: the input bytes drive a generator of
// schemas in the supported subset, with bounds drawn from edge values (Int64.min/max, ±10^18,
// Int32.max - 1, ...), so the fuzzer reaches deep and extreme schemas that byte mutations of
// JSON text rarely produce. The generated schema is checked exactly like a text input.
@testable import SLMConstraint

/// Reads the input front to back; past the end every read is 0.
struct ByteSource {
    let bytes: [UInt8]
    var i = 0
    var budget = 4096  // nodes left: keeps generated schemas bounded
    var longBudget = 1 << 18  // characters left for long names (wide objects are separate)
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    var isEmpty: Bool { i >= bytes.count }
    mutating func byte() -> UInt8 {
        defer { i += 1 }
        return i < bytes.count ? bytes[i] : 0
    }
    mutating func below(_ n: Int) -> Int { Int(byte()) % n }
    mutating func u16() -> Int { Int(byte()) << 8 | Int(byte()) }
    mutating func bool() -> Bool { byte() & 1 == 1 }
}

private let edgeIntegers: [String] = [
    "0", "1", "-1", "2", "9", "10", "-10", "100", "255", "-256", "65535",
    "2147483646", "2147483647", "2147483648", "-2147483648", "4294967295",
    "9223372036854775807", "-9223372036854775808", "-9223372036854775807", "9223372036854775806",
    "1000000000000000000", "-1000000000000000000", "1000000000000000001", "-1000000000000000001",
    "999999999999999", "-999999999999999", "1000000000000000", "-1000000000000000",
    "999999999999999999", "-999999999999999999", "18446744073709551615", "99999999999999999999",
]
private let edgeNumbers: [String] = ["0.5", "-0.0", "1e3", "1E-7", "1.5e308", "-2.25", "0e0", "123456789012345678901234567890"]
private let edgeStrings: [String] = ["", "a", "ab", "abc", "é", "\u{1F600}", "\"", "\\", "\n", "\u{0}", "a\u{7F}b", "~/", "\u{FEFF}"]

extension ByteSource {
    mutating func integerText() -> String {
        switch below(4) {
        case 0: return String(Int64(truncatingIfNeeded: UInt64(u16()) << 48 | UInt64(u16()) << 32 | UInt64(u16()) << 16 | UInt64(u16())))
        case 1: return String(u16() - 32768)
        default: return edgeIntegers[below(edgeIntegers.count)]
        }
    }
    mutating func countValue() -> OrderedJSON {
        .number(below(3) == 0 ? String(below(6)) : integerText())
    }
    mutating func name() -> String {
        switch below(8) {
        case 0: return edgeStrings[below(edgeStrings.count)]
        case 1:  // long keys
            let n = min(u16() % 2048, longBudget)
            longBudget -= n
            return String(repeating: "k", count: n) + String(byte())
        default: return "p" + String(below(40))
        }
    }
    mutating func literal(_ allowNumbers: Bool = true) -> OrderedJSON {
        switch below(allowNumbers ? 6 : 4) {
        case 0: return .null
        case 1: return .bool(bool())
        case 2, 3: return .string(below(3) == 0 ? edgeStrings[below(edgeStrings.count)] : name())
        case 4: return .number(integerText())
        default: return .number(edgeNumbers[below(edgeNumbers.count)])
        }
    }

    /// A schema of the supported subset (sometimes bent out of it, so error paths run too).
    mutating func schema(depth: Int = 0) -> OrderedJSON {
        budget -= 1
        var m: [(key: String, value: OrderedJSON)] = []
        let kind = budget <= 0 || depth > 34 ? below(5) : below(12)
        switch kind {
        case 0:  // integer, with edge bounds
            m.append(("type", .string("integer")))
            if bool() { m.append(("minimum", .number(integerText()))) }
            if bool() { m.append(("maximum", .number(integerText()))) }
        case 1:
            m.append(("type", .string(bool() ? "number" : "boolean")))
        case 2:
            m.append(("type", .string("string")))
            if bool() { m.append(("maxLength", countValue())) }
        case 3:
            m.append(("type", .string("null")))
        case 4:  // enum or const, possibly with bounds the values must meet
            if bool() {
                let n = below(4) == 0 ? u16() % 5000 : 1 + below(6)
                m.append(("enum", .array((0..<n).map { _ in literal() })))
            } else {
                m.append(("const", literal()))
            }
            if below(3) == 0 { m.append(("minimum", .number(integerText()))) }
            if below(3) == 0 { m.append(("maximum", .number(integerText()))) }
            if below(4) == 0 { m.append(("maxLength", countValue())) }
            if below(4) == 0 { m.append(("type", .string(["integer", "string", "number"][below(3)]))) }
        case 5, 6:  // array
            m.append(("type", .string("array")))
            m.append(("items", schema(depth: depth + 1)))
            if below(3) != 0 { m.append(("maxItems", countValue())) }
        case 7, 8, 9:  // object
            m.append(("type", .string("object")))
            let n: Int
            var longKeys = 0
            switch below(16) {
            case 0:  // near maxPropertiesPerObject (128), sometimes all with long names
                n = 100 + below(40)
                if bool() { longKeys = min(u16() % 4096, longBudget / 64); longBudget -= longKeys * 64 }
            case 1 where below(64) == 0: n = 1000 + u16() * 2  // far beyond it: parse cost of a wide object
            default: n = below(6)
            }
            var props: [(key: String, value: OrderedJSON)] = []
            var seen = Set<String>()
            var k = 0
            while props.count < n && k < n + 64 {
                k += 1
                let key = n > 200 ? "p\(props.count)"
                    : longKeys > 0 ? String(repeating: "k", count: longKeys) + String(props.count) : name()
                guard seen.insert(key).inserted else { continue }
                props.append((key, n > 64 ? .object([("type", .string("null"))]) : schema(depth: depth + 1)))
            }
            m.append(("properties", .object(props)))
            let required = props.filter { _ in below(3) == 0 }.map { OrderedJSON.string($0.key) }
            if !required.isEmpty { m.append(("required", .array(required))) }
            if bool() { m.append(("additionalProperties", .bool(false))) }
        case 10:  // union
            let names = ["object", "array", "string", "integer", "number", "boolean", "null"]
            var types: [OrderedJSON] = []
            for t in names where bool() { types.append(.string(t)) }
            if types.isEmpty { types = [.string("integer"), .string("null")] }
            m.append(("type", .array(types)))
            if types.contains(.string("array")) { m.append(("items", schema(depth: depth + 1))); if bool() { m.append(("maxItems", countValue())) } }
            if types.contains(.string("object")) { m.append(("properties", .object([("a", schema(depth: depth + 1))]))) }
            if types.contains(.string("string")), bool() { m.append(("maxLength", countValue())) }
            if types.contains(.string("integer")), !types.contains(.string("number")) {
                if bool() { m.append(("minimum", .number(integerText()))) }
                if bool() { m.append(("maximum", .number(integerText()))) }
            }
        default:  // annotations around a nested schema
            m = schema(depth: depth).objectMembers
            m.append(("description", .string(name())))
            if bool() { m.append(("default", literal())) }
        }
        return .object(m)
    }
}

extension OrderedJSON {
    var objectMembers: [(key: String, value: OrderedJSON)] {
        if case .object(let m) = self { return m }
        return []
    }
}
