/// Compiles a JSON Schema subset into a `SchemaAutomaton`.
///
/// Supported keywords:
/// - `type`: "object", "array", "string", "integer", "number", "boolean", "null", or an array
///   of them (a union; members are told apart by their first byte). Required unless `enum` or
///   `const` is given: a schema without `type` admits any value, which is not supported.
///   A union of "integer" and "number" is "number".
/// - `properties` (output in the schema's order), `required`, `additionalProperties: false`.
///   A missing `additionalProperties` is accepted and output is closed anyway: every output
///   then still validates against the schema as written. `additionalProperties: true` (or a
///   schema) asks for members slmd would never produce, so it is refused.
/// - `enum` and `const` whose values are strings, numbers, booleans or null; each value is
///   produced only in its compact spelling (`OrderedJSON.compactText`, numbers as written).
/// - `minimum` / `maximum` (inclusive, integer values) for type "integer" only.
/// - `maxLength` for strings (code points).
/// - `items` (one schema) and `maxItems` for arrays.
/// - Annotations, which constrain nothing: `title`, `description`, `$comment`, `$schema`,
///   `examples`, `default`.
///
/// Everything else (`$ref`, `pattern`, `format`, `minLength`, `anyOf`, `oneOf`, `allOf`,
/// `exclusiveMinimum`, `minItems`, tuple `items`, ...) is a `SchemaError` naming its path.
/// A keyword that does not apply to the declared type (`maxLength` on an integer) is an
/// error too, since it usually means a mistake in the schema.
public enum JSONSchemaCompiler {
    public static let maxPropertiesPerObject = 128
    public static let maxEnumValues = 4096
    public static let maxNesting = 32
    /// Bound on |minimum| and |maximum|.
    public static let maxIntegerMagnitude: Int64 = 1_000_000_000_000_000_000
    /// Longest schema text accepted, in bytes. Schemas come from clients and intent files;
    /// a real command schema is a few KiB, and this bounds parse and compile time.
    public static let maxSchemaBytes = 64 * 1024
    /// Most trie nodes (one per byte of every property key and enum spelling, per place it
    /// may start) one compiled schema may hold. Keys of optional properties go into one trie
    /// per start position, so the count grows with properties² × key length; the cap keeps a
    /// compiled schema around 1 MiB (about 17 bytes a node once flattened) and compilation
    /// itself bounded, whatever the schema text.
    public static let maxTrieNodes = 1 << 16
    /// Longest property name or enum/const spelling, in bytes.
    public static let maxLiteralBytes = 1024

    public static func compile(_ text: String) throws(SchemaError) -> SchemaAutomaton {
        guard text.utf8.count <= maxSchemaBytes else {
            throw SchemaError(.tooLarge, path: "#", "the schema is \(text.utf8.count) bytes; at most \(maxSchemaBytes) are accepted")
        }
        let value: OrderedJSON
        do { value = try OrderedJSON(parsing: text) } catch {
            throw SchemaError(.invalidJSON, path: "#", error.description)
        }
        return try compile(value)
    }

    public static func compile(_ schema: OrderedJSON) throws(SchemaError) -> SchemaAutomaton {
        let size = schema.compactText.utf8.count
        guard size <= maxSchemaBytes else {
            throw SchemaError(.tooLarge, path: "#", "the schema is \(size) bytes as compact JSON; at most \(maxSchemaBytes) are accepted")
        }
        var b = Builder()
        let root = try b.node(schema, path: "#", nesting: 0)
        return SchemaAutomaton(nodes: b.nodes, root: root, tries: b.tries, schema: schema)
    }

    static let annotations: Set<String> = ["title", "description", "$comment", "$schema", "examples", "default"]
    static let supported: Set<String> = ["type", "properties", "required", "additionalProperties", "enum", "const",
                                         "minimum", "maximum", "maxLength", "items", "maxItems"]
    static let typeNames = ["object", "array", "string", "integer", "number", "boolean", "null"]

    struct Builder {
        typealias Node = SchemaAutomaton.Node
        var nodes: [Node] = []
        var tries = TrieBuilder()

        mutating func add(_ n: Node) -> Int32 {
            nodes.append(n)
            return Int32(nodes.count - 1)
        }

        static func pointer(_ path: String, _ key: String) -> String {
            path + "/" + key.replacing("~", with: "~0").replacing("/", with: "~1")
        }

        static func typeName(_ v: OrderedJSON) -> String {
            switch v {
            case .null: return "null"
            case .bool: return "boolean"
            case .number: return "number"
            case .string: return "string"
            case .array: return "array"
            case .object: return "object"
            }
        }

        static func isIntegerText(_ s: String) -> Bool {
            !s.contains(".") && !s.contains("e") && !s.contains("E")
        }

        /// A non-negative integer keyword value (maxLength, maxItems).
        static func count(_ v: OrderedJSON, _ path: String) throws(SchemaError) -> Int32 {
            guard case .number(let s) = v, isIntegerText(s), let n = Int(s), n >= 0 else {
                throw SchemaError(.invalidValue, path: path, "expected a non-negative integer")
            }
            return Int32(min(n, Int(Int32.max - 1)))
        }

        /// Checks a key or literal spelling and the trie budget before `insert` grows it.
        mutating func insert(_ bytes: [UInt8], payload: Int32, root: Int32, path: String) throws(SchemaError) {
            guard bytes.count <= JSONSchemaCompiler.maxLiteralBytes else {
                throw SchemaError(.tooLarge, path: path, "a property name or enum value longer than \(JSONSchemaCompiler.maxLiteralBytes) bytes")
            }
            guard tries.nodeCount + bytes.count <= JSONSchemaCompiler.maxTrieNodes else {
                throw SchemaError(.tooLarge, path: path,
                                  "the schema's property names and enum values need more than \(JSONSchemaCompiler.maxTrieNodes) trie nodes; use fewer or shorter names, or make properties required")
            }
            tries.insert(bytes, payload: payload, root: root)
        }

        static func bound(_ v: OrderedJSON, _ path: String) throws(SchemaError) -> Int64 {
            guard case .number(let s) = v, isIntegerText(s), let n = Int64(s) else {
                throw SchemaError(.invalidValue, path: path, "expected an integer")
            }
            // magnitude, not abs(): abs(Int64.min) traps.
            guard n.magnitude <= JSONSchemaCompiler.maxIntegerMagnitude.magnitude else {
                throw SchemaError(.tooLarge, path: path, "bounds beyond ±10^18 are not supported")
            }
            return n
        }

        mutating func node(_ schema: OrderedJSON, path: String, nesting: Int) throws(SchemaError) -> Int32 {
            guard nesting <= JSONSchemaCompiler.maxNesting else {
                throw SchemaError(.tooLarge, path: path, "nesting deeper than \(JSONSchemaCompiler.maxNesting)")
            }
            guard case .object(let members) = schema else {
                throw SchemaError(.invalidValue, path: path, "a schema must be an object (boolean schemas are not supported)")
            }
            for m in members where !JSONSchemaCompiler.supported.contains(m.key) && !JSONSchemaCompiler.annotations.contains(m.key) {
                let hint: String
                switch m.key {
                case "anyOf", "oneOf", "allOf": hint = "; for a union of types use a \"type\" array"
                case "$ref", "$defs", "definitions": hint = "; inline the referenced schema"
                default: hint = ""
                }
                throw SchemaError(.unsupportedKeyword, path: Self.pointer(path, m.key), "keyword \"\(m.key)\" is not supported\(hint)")
            }

            // Declared types, in order.
            var types: [String] = []
            if let t = schema["type"] {
                let list: [OrderedJSON]
                switch t {
                case .string: list = [t]
                case .array(let a) where !a.isEmpty: list = a
                default: throw SchemaError(.invalidValue, path: path + "/type", "expected a type name or a non-empty array of them")
                }
                for (i, item) in list.enumerated() {
                    guard case .string(let name) = item, JSONSchemaCompiler.typeNames.contains(name) else {
                        throw SchemaError(.invalidValue, path: path + "/type" + (list.count > 1 || t != item ? "/\(i)" : ""),
                                          "unknown type \(item.compactText); expected one of \(JSONSchemaCompiler.typeNames.joined(separator: ", "))")
                    }
                    guard !types.contains(name) else {
                        throw SchemaError(.invalidValue, path: path + "/type/\(i)", "type \"\(name)\" listed twice")
                    }
                    types.append(name)
                }
            }

            // Keywords that only make sense for some types.
            let applies: [(String, [String])] = [
                ("properties", ["object"]), ("required", ["object"]), ("additionalProperties", ["object"]),
                ("items", ["array"]), ("maxItems", ["array"]), ("maxLength", ["string"]),
                ("minimum", ["integer"]), ("maximum", ["integer"]),
            ]
            let hasEnum = schema["enum"] != nil || schema["const"] != nil
            for (key, forTypes) in applies where schema[key] != nil {
                if (key == "minimum" || key == "maximum") && types.contains("number") {
                    throw SchemaError(.unsupportedKeyword, path: Self.pointer(path, key),
                                      "\(key) is supported for type \"integer\" only, not \"number\"")
                }
                let ok = types.contains { forTypes.contains($0) }
                if !ok && !(hasEnum && types.isEmpty && ["minimum", "maximum", "maxLength"].contains(key)) {
                    throw SchemaError(.invalidValue, path: Self.pointer(path, key),
                                      "\(key) applies to type \(forTypes[0]) but the schema's type is \(types.isEmpty ? "not given" : types.joined(separator: ", "))")
                }
            }
            if let ap = schema["additionalProperties"], ap != .bool(false) {
                throw SchemaError(.unsupportedKeyword, path: path + "/additionalProperties",
                                  "only additionalProperties: false is supported (output has exactly the declared properties)")
            }

            if hasEnum { return try literals(schema, types: types, path: path) }
            guard !types.isEmpty else {
                throw SchemaError(.invalidValue, path: path, "\"type\" (or \"enum\"/\"const\") is required: a schema that admits any value is not supported")
            }

            var alternatives: [Int32] = []
            for t in types {
                switch t {
                case "object": alternatives.append(try object(schema, path: path, nesting: nesting))
                case "array": alternatives.append(try array(schema, path: path, nesting: nesting))
                case "string":
                    var n = Node(kind: .string)
                    if let m = schema["maxLength"] { n.maxLength = try Self.count(m, path + "/maxLength") }
                    alternatives.append(add(n))
                case "integer":
                    if types.contains("number") { continue }  // number already admits every integer
                    alternatives.append(try integer(schema, path: path))
                case "number": alternatives.append(add(Node(kind: .number)))
                case "boolean": alternatives.append(try literalNode([Array("false".utf8), Array("true".utf8)], path: path))
                default: alternatives.append(try literalNode([Array("null".utf8)], path: path))
                }
            }
            if alternatives.count == 1 { return alternatives[0] }
            var u = Node(kind: .union)
            u.dispatch = [Int32](repeating: -1, count: 256)
            for m in alternatives {
                let firsts: [UInt8]
                switch nodes[Int(m)].kind {
                case .object: firsts = [UInt8(ascii: "{")]
                case .array: firsts = [UInt8(ascii: "[")]
                case .string: firsts = [UInt8(ascii: "\"")]
                case .integer, .number: firsts = Array("-0123456789".utf8)
                case .literals: firsts = nodes[Int(m)].literals.map { $0[0] }
                case .union: firsts = []
                }
                for b in firsts { u.dispatch[Int(b)] = m }
                u.depth = max(u.depth, nodes[Int(m)].depth)
            }
            return add(u)
        }

        mutating func literalNode(_ values: [[UInt8]], path: String) throws(SchemaError) -> Int32 {
            var n = Node(kind: .literals)
            n.trieRoot = tries.newRoot()
            for v in values { try insert(v, payload: 0, root: n.trieRoot, path: path) }
            n.literals = values
            return add(n)
        }

        mutating func literals(_ schema: OrderedJSON, types: [String], path: String) throws(SchemaError) -> Int32 {
            let values: [OrderedJSON]
            let at: String
            switch (schema["enum"], schema["const"]) {
            case (.some, .some):
                throw SchemaError(.unsupportedKeyword, path: path + "/const", "enum and const together are not supported; use one")
            case (.some(let e), nil):
                guard case .array(let list) = e, !list.isEmpty else {
                    throw SchemaError(.emptyLanguage, path: path + "/enum", "enum must be a non-empty array")
                }
                guard list.count <= JSONSchemaCompiler.maxEnumValues else {
                    throw SchemaError(.tooLarge, path: path + "/enum", "more than \(JSONSchemaCompiler.maxEnumValues) values")
                }
                values = list
                at = path + "/enum"
            case (nil, .some(let c)):
                values = [c]
                at = path + "/const"
            default:
                preconditionFailure("literals() without enum or const")
            }
            var spellings: [[UInt8]] = []
            var seen: Set<[UInt8]> = []
            for (i, v) in values.enumerated() {
                let vp = schema["enum"] != nil ? at + "/\(i)" : at
                var kind = Self.typeName(v)
                guard kind != "array" && kind != "object" else {
                    throw SchemaError(.unsupportedKeyword, path: vp, "enum/const values must be strings, numbers, booleans or null")
                }
                if case .number(let s) = v, Self.isIntegerText(s), types.contains("integer") { kind = "integer" }
                if !types.isEmpty && !types.contains(kind) {
                    throw SchemaError(.invalidValue, path: vp, "\(v.compactText) is not of type \(types.joined(separator: ", "))")
                }
                // Other keywords must hold for each value, or the schema contradicts itself.
                if case .string(let s) = v, let m = schema["maxLength"], s.unicodeScalars.count > Int(try Self.count(m, path + "/maxLength")) {
                    throw SchemaError(.invalidValue, path: vp, "\(v.compactText) is longer than maxLength")
                }
                if case .number(let s) = v {
                    let n = Int64(s)
                    if let m = schema["minimum"] {
                        let lo = try Self.bound(m, path + "/minimum")
                        if n == nil || n! < lo { throw SchemaError(.invalidValue, path: vp, "\(s) is below minimum") }
                    }
                    if let m = schema["maximum"] {
                        let hi = try Self.bound(m, path + "/maximum")
                        if n == nil || n! > hi { throw SchemaError(.invalidValue, path: vp, "\(s) is above maximum") }
                    }
                }
                var bytes: [UInt8] = []
                v.appendCompact(to: &bytes)
                if seen.insert(bytes).inserted { spellings.append(bytes) }
            }
            return try literalNode(spellings, path: at)
        }

        mutating func integer(_ schema: OrderedJSON, path: String) throws(SchemaError) -> Int32 {
            let cap: Int64 = 999_999_999_999_999  // maxIntegerDigits nines
            let big = JSONSchemaCompiler.maxIntegerMagnitude
            let lo = try schema["minimum"].map { v throws(SchemaError) in try Self.bound(v, path + "/minimum") }
            let hi = try schema["maximum"].map { v throws(SchemaError) in try Self.bound(v, path + "/maximum") }
            var n = Node(kind: .integer)
            // Unbounded sides default to maxIntegerDigits digits (wider if the other bound needs it).
            n.lo = lo ?? ((hi ?? 0) < -cap ? -big : -cap)
            n.hi = hi ?? ((lo ?? 0) > cap ? big : cap)
            guard n.lo <= n.hi else {
                throw SchemaError(.emptyLanguage, path: path + "/minimum", "minimum \(n.lo) is above maximum \(n.hi)")
            }
            return add(n)
        }

        mutating func array(_ schema: OrderedJSON, path: String, nesting: Int) throws(SchemaError) -> Int32 {
            guard let items = schema["items"] else {
                throw SchemaError(.invalidValue, path: path, "type array needs \"items\" (arrays of any value are not supported)")
            }
            if case .array = items {
                throw SchemaError(.unsupportedKeyword, path: path + "/items", "tuple items (an array of schemas) are not supported")
            }
            var n = Node(kind: .array)
            n.item = try node(items, path: path + "/items", nesting: nesting + 1)
            if let m = schema["maxItems"] { n.maxItems = try Self.count(m, path + "/maxItems") }
            n.depth = 1 + nodes[Int(n.item)].depth
            return add(n)
        }

        mutating func object(_ schema: OrderedJSON, path: String, nesting: Int) throws(SchemaError) -> Int32 {
            var n = Node(kind: .object)
            var props: [(String, OrderedJSON)] = []
            if let p = schema["properties"] {
                guard case .object(let list) = p else {
                    throw SchemaError(.invalidValue, path: path + "/properties", "expected an object of schemas")
                }
                guard list.count <= JSONSchemaCompiler.maxPropertiesPerObject else {
                    throw SchemaError(.tooLarge, path: path + "/properties", "more than \(JSONSchemaCompiler.maxPropertiesPerObject) properties")
                }
                props = list.map { ($0.key, $0.value) }
            }
            var required: [String] = []
            if let r = schema["required"] {
                guard case .array(let list) = r else {
                    throw SchemaError(.invalidValue, path: path + "/required", "expected an array of property names")
                }
                for (i, item) in list.enumerated() {
                    guard case .string(let name) = item, !required.contains(name) else {
                        throw SchemaError(.invalidValue, path: path + "/required/\(i)", "expected a property name not listed before")
                    }
                    guard props.contains(where: { $0.0 == name }) else {
                        throw SchemaError(.emptyLanguage, path: path + "/required/\(i)",
                                          "required property \"\(name)\" is not in properties (output is closed, so it could never appear)")
                    }
                    required.append(name)
                }
            }
            for (name, sub) in props {
                let child = try node(sub, path: Self.pointer(path + "/properties", name), nesting: nesting + 1)
                n.props.append(.init(name: name, node: child, required: required.contains(name)))
                n.depth = max(n.depth, 1 + nodes[Int(child)].depth)
            }
            let count = n.props.count
            n.firstRequiredFrom = [Int32](repeating: Int32(count), count: count + 1)
            for s in stride(from: count - 1, through: 0, by: -1) {
                n.firstRequiredFrom[s] = n.props[s].required ? Int32(s) : n.firstRequiredFrom[s + 1]
            }
            n.keyRoots = [Int32](repeating: -1, count: count + 1)
            for s in 0..<count {
                let root = tries.newRoot()
                for i in s...min(Int(n.firstRequiredFrom[s]), count - 1) {
                    var key: [UInt8] = []
                    OrderedJSON.appendQuoted(n.props[i].name, to: &key)
                    key.append(UInt8(ascii: ":"))
                    try insert(key, payload: Int32(i), root: root, path: Self.pointer(path + "/properties", n.props[i].name))
                }
                n.keyRoots[s] = root
            }
            return add(n)
        }
    }
}
