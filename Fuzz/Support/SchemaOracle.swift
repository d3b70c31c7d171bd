// Checks a compiled SchemaAutomaton against the schema it came from, independently of the
// compiler: used by the "schema" and "intents" harnesses.
//
// - No dead ends: every state reached by stepping allowed bytes either allows another byte
//   or is accepting; `step` accepts every byte `allowedBytes` lists; `onlyAllowedByte` agrees.
// - Soundness: a random walk that reaches an accepting state has produced text that is
//   RFC 8259 JSON (checked by the recogniser below, not the project's parser), that
//   satisfies the schema (checked by `schemaViolation`, a plain reading of JSON Schema
//   semantics for the supported keywords), whose object members are in `properties` order,
//   which `accepts` accepts, and which is no longer than `maxOutputBytes`.
@testable import SLMConstraint

// MARK: RFC 8259 recogniser

/// Whether `b` is exactly one JSON value (surrounding whitespace allowed), by RFC 8259's
/// grammar, with valid UTF-8 in strings and no unpaired surrogate escapes.
func isStrictJSON(_ b: [UInt8]) -> Bool {
    var i = 0
    func ws() { while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 } }
    func lit(_ s: String) -> Bool {
        for c in s.utf8 { guard i < b.count, b[i] == c else { return false }; i += 1 }
        return true
    }
    func digit() -> Bool { i < b.count && b[i] >= 0x30 && b[i] <= 0x39 }
    func number() -> Bool {
        if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
        guard digit() else { return false }
        if b[i] == 0x30 { i += 1 } else { while digit() { i += 1 } }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard digit() else { return false }
            while digit() { i += 1 }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard digit() else { return false }
            while digit() { i += 1 }
        }
        return true
    }
    func hex4() -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = b[i + k]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        i += 4
        return v
    }
    func string() -> Bool {
        guard i < b.count, b[i] == UInt8(ascii: "\"") else { return false }
        i += 1
        var start = i
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                guard String(validating: b[start..<i], as: UTF8.self) != nil else { return false }
                i += 1
                return true
            }
            if c < 0x20 { return false }
            if c == UInt8(ascii: "\\") {
                guard String(validating: b[start..<i], as: UTF8.self) != nil else { return false }
                i += 1
                guard i < b.count else { return false }
                let e = b[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    break
                case UInt8(ascii: "u"):
                    guard let u = hex4() else { return false }
                    if (0xD800...0xDBFF).contains(u) {
                        guard lit("\\u"), let l = hex4(), (0xDC00...0xDFFF).contains(l) else { return false }
                    } else if (0xDC00...0xDFFF).contains(u) {
                        return false
                    }
                default:
                    return false
                }
                start = i
                continue
            }
            i += 1
        }
        return false
    }
    func value(_ depth: Int) -> Bool {
        guard depth < 512 else { return false }
        ws()
        guard i < b.count else { return false }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1
            ws()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return true }
            while true {
                ws()
                guard string() else { return false }
                ws()
                guard lit(":"), value(depth + 1) else { return false }
                ws()
                if lit(",") { continue }
                return lit("}")
            }
        case UInt8(ascii: "["):
            i += 1
            ws()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return true }
            while true {
                guard value(depth + 1) else { return false }
                ws()
                if lit(",") { continue }
                return lit("]")
            }
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "t"): return lit("true")
        case UInt8(ascii: "f"): return lit("false")
        case UInt8(ascii: "n"): return lit("null")
        default: return number()
        }
    }
    guard value(0) else { return false }
    ws()
    return i == b.count
}

// MARK: JSON Schema validator (the keywords JSONSchemaCompiler supports)

private func isIntegerValued(_ text: String) -> Bool {
    if !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) { return true }
    guard let d = Double(text), d.isFinite else { return false }
    return d == d.rounded(.towardZero)
}

/// -1, 0, 1 comparing two JSON number texts; exact for integers that fit Int64.
private func compareNumbers(_ a: String, _ b: String) -> Int {
    if let x = Int64(a), let y = Int64(b) { return x < y ? -1 : (x > y ? 1 : 0) }
    let x = Double(a) ?? .nan, y = Double(b) ?? .nan
    return x < y ? -1 : (x > y ? 1 : 0)
}

/// JSON Schema equality (numbers by value, strings by code points, objects unordered).
func jsonEqual(_ a: OrderedJSON, _ b: OrderedJSON) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case let (.bool(x), .bool(y)): return x == y
    case let (.number(x), .number(y)): return x == y || (Double(x) != nil && compareNumbers(x, y) == 0)
    case let (.string(x), .string(y)): return x.utf8.elementsEqual(y.utf8)
    case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { jsonEqual($0, $1) }
    case let (.object(x), .object(y)):
        return x.count == y.count && x.allSatisfy { m in y.contains { $0.key.utf8.elementsEqual(m.key.utf8) && jsonEqual($0.value, m.value) } }
    default: return false
    }
}

/// Why `value` does not satisfy `schema`, or nil when it does.
func schemaViolation(_ value: OrderedJSON, _ schema: OrderedJSON, at path: String = "$") -> String? {
    guard case .object = schema else { return "\(path): schema is not an object" }
    if case .array(let list)? = schema["enum"], !list.contains(where: { jsonEqual($0, value) }) {
        return "\(path): \(value.compactText) is not in enum"
    }
    if let c = schema["const"], !jsonEqual(c, value) { return "\(path): \(value.compactText) is not the const" }
    if let t = schema["type"] {
        var names: [String] = []
        if case .string(let n) = t { names = [n] }
        if case .array(let a) = t { names = a.compactMap { if case .string(let n) = $0 { return n }; return nil } }
        let ok = names.contains { n in
            switch (n, value) {
            case ("null", .null), ("boolean", .bool), ("number", .number), ("string", .string),
                 ("array", .array), ("object", .object): return true
            case ("integer", .number(let s)): return isIntegerValued(s)
            default: return false
            }
        }
        if !ok { return "\(path): \(value.compactText) is not of type \(t.compactText)" }
    }
    switch value {
    case .number(let s):
        if case .number(let m)? = schema["minimum"], compareNumbers(s, m) < 0 { return "\(path): \(s) < minimum \(m)" }
        if case .number(let m)? = schema["maximum"], compareNumbers(s, m) > 0 { return "\(path): \(s) > maximum \(m)" }
    case .string(let s):
        if case .number(let m)? = schema["maxLength"], let n = Int(m), s.unicodeScalars.count > n {
            return "\(path): string of \(s.unicodeScalars.count) code points > maxLength \(n)"
        }
    case .array(let items):
        if case .number(let m)? = schema["maxItems"], let n = Int(m), items.count > n {
            return "\(path): \(items.count) items > maxItems \(n)"
        }
        if let itemSchema = schema["items"] {
            for (k, item) in items.enumerated() {
                if let v = schemaViolation(item, itemSchema, at: "\(path)[\(k)]") { return v }
            }
        }
    case .object(let members):
        var props: [(key: String, value: OrderedJSON)] = []
        if case .object(let p)? = schema["properties"] { props = p }
        if case .array(let req)? = schema["required"] {
            for r in req {
                if case .string(let name) = r, !members.contains(where: { $0.key.utf8.elementsEqual(name.utf8) }) {
                    return "\(path): required member \"\(name)\" missing"
                }
            }
        }
        var lastIndex = -1
        for m in members {
            guard let k = props.firstIndex(where: { $0.key.utf8.elementsEqual(m.key.utf8) }) else {
                // Output is closed even without additionalProperties: false (see JSONSchemaCompiler).
                return "\(path): member \"\(m.key)\" is not a declared property"
            }
            if k <= lastIndex { return "\(path): member \"\(m.key)\" out of properties order (or repeated)" }
            lastIndex = k
            if let v = schemaViolation(m.value, props[k].value, at: "\(path).\(m.key)") { return v }
        }
    default:
        break
    }
    return nil
}

// MARK: Walking the automaton

/// Checks the automaton's local invariants at `s` and returns its allowed bytes
/// (`onlyAllowedByte` is compared on some steps only: it costs another 256 steps).
private func checkedAllowed(_ a: SchemaAutomaton, _ s: SchemaAutomaton.State, after out: [UInt8], rng: inout FuzzRNG) -> [UInt8] {
    let allowed = a.allowedBytes(s)
    if a.isComplete(s) {
        fuzzCheck(allowed.isEmpty, "complete state allows \(fuzzShow(allowed)) after \(fuzzShow(out))")
    }
    fuzzCheck(!allowed.isEmpty || a.isAccepting(s), "dead end: nothing allowed and not accepting after \(fuzzShow(out))")
    if allowed.count <= 1 || rng.chance(1, in: 16) {
        let only = a.onlyAllowedByte(s)
        fuzzCheck(only == (allowed.count == 1 ? allowed[0] : nil), "onlyAllowedByte \(String(describing: only)) vs allowed \(fuzzShow(allowed))")
    }
    return allowed
}

/// Bytes that tend to finish a value: closers first, then anything that does not open one.
private func closingChoice(_ allowed: [UInt8], _ rng: inout FuzzRNG) -> UInt8 {
    for c in [UInt8(ascii: "\""), UInt8(ascii: "]"), UInt8(ascii: "}")] where allowed.contains(c) { return c }
    let calm = allowed.filter { $0 != UInt8(ascii: "[") && $0 != UInt8(ascii: "{") && $0 != UInt8(ascii: "\\") && $0 < 0x80 }
    if !calm.isEmpty { return calm[0] }
    return allowed[0]
}

/// One random walk: `randomSteps` bytes chosen at random, then bytes that close values, up
/// to `limit` bytes. Returns the text if it ended in an accepting state.
func walkAutomaton(_ a: SchemaAutomaton, rng: inout FuzzRNG, randomSteps: Int, limit: Int) -> [UInt8]? {
    var s = a.initialState
    var out: [UInt8] = []
    while true {
        let allowed = checkedAllowed(a, s, after: out, rng: &rng)
        if allowed.isEmpty { return out }  // accepting (checked) and nothing may follow
        if a.isAccepting(s) && (out.count >= randomSteps || rng.chance(1, in: 16)) { return out }
        if out.count >= limit { return nil }
        let b: UInt8
        if out.count < randomSteps && !rng.chance(1, in: 4) {
            b = allowed[rng.below(allowed.count)]
        } else {
            b = closingChoice(allowed, &rng)
        }
        guard let next = a.step(s, b) else { fuzzFail("step refused allowed byte \(b) after \(fuzzShow(out))") }
        out.append(b)
        s = next
    }
}

/// Walks `a` a few times and checks everything each accepted text must satisfy.
func checkAutomaton(_ a: SchemaAutomaton, schema: OrderedJSON, rng: inout FuzzRNG, walks: Int = 3) {
    for w in 0..<walks {
        let randomSteps = [0, 24, 400][w % 3]
        guard let text = walkAutomaton(a, rng: &rng, randomSteps: randomSteps, limit: randomSteps + 8192) else { continue }
        fuzzCheck(a.accepts(text), "accepts() refuses the text it walked: \(fuzzShow(text))")
        if let m = a.maxOutputBytes {
            fuzzCheck(text.count <= m, "output of \(text.count) bytes > maxOutputBytes \(m): \(fuzzShow(text))")
        }
        fuzzCheck(isStrictJSON(text), "automaton output is not JSON: \(fuzzShow(text))\n schema: \(schema.compactText)")
        let value: OrderedJSON
        do { value = try OrderedJSON(parsing: String(decoding: text, as: UTF8.self), maxDepth: 1 << 20) } catch {
            fuzzFail("OrderedJSON cannot parse automaton output (\(error)): \(fuzzShow(text))")
        }
        if let v = schemaViolation(value, schema) {
            fuzzFail("automaton output violates the schema: \(v)\n output: \(fuzzShow(text))\n schema: \(fuzzShow(Array(schema.compactText.utf8)))")
        }
    }
}
