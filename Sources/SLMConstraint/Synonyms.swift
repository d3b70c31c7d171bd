/// Extra spellings for the enum values of a schema's top-level fields, from an intent file or
/// a request (`{"device": {"light": ["lights", "lamp"]}}`).
///
/// A tiny model writes the word it read: "turn off the television" wants `"television"`,
/// "kill the lights" wants `"kill"`. Decoding uses the schema with the spellings added to
/// each enum, so the model may write them, and the output maps each back to its value: the
/// reply holds only the schema's own values.
public struct Synonyms: Sendable, Equatable {
    /// Field → spelling → the value it stands for.
    public let spellings: [String: [String: String]]
    /// In the order given, for the decoding schema (enum order is the model's order too).
    let ordered: [(field: String, spelling: String)]

    public static func == (a: Synonyms, b: Synonyms) -> Bool { a.spellings == b.spellings }

    public static let none = Synonyms(spellings: [:], ordered: [])

    init(spellings: [String: [String: String]], ordered: [(field: String, spelling: String)]) {
        self.spellings = spellings
        self.ordered = ordered
    }

    public var isEmpty: Bool { spellings.isEmpty }

    /// Reads `{"field": {"value": ["spelling", ...]}}` against `schema`: every field is a
    /// top-level property with a string `enum`, every value one of its values, and a
    /// spelling neither a value of the field nor given for two values.
    public init(_ table: OrderedJSON, schema: OrderedJSON) throws(SchemaError) {
        guard case .object(let fields) = table else { throw SchemaError(.invalidValue, path: "synonyms", "expected an object of fields") }
        guard case .object(let props)? = schema["properties"] else {
            throw SchemaError(.invalidValue, path: "synonyms", "the schema has no top-level properties")
        }
        var spellings: [String: [String: String]] = [:]
        var ordered: [(field: String, spelling: String)] = []
        for f in fields {
            let path = "synonyms/\(f.key)"
            guard case .array(let values)? = props.first(where: { $0.key == f.key })?.value["enum"] else {
                throw SchemaError(.invalidValue, path: path, "not a top-level property with an enum")
            }
            let names = Set(values.compactMap { if case .string(let s) = $0 { return s } else { return nil } })
            guard case .object(let table) = f.value else { throw SchemaError(.invalidValue, path: path, "expected an object of values") }
            var map: [String: String] = [:]
            for v in table {
                guard names.contains(v.key) else { throw SchemaError(.invalidValue, path: "\(path)/\(v.key)", "not one of the field's values") }
                guard case .array(let items) = v.value else { throw SchemaError(.invalidValue, path: "\(path)/\(v.key)", "expected an array of strings") }
                for case let item in items {
                    guard case .string(let s) = item, !s.isEmpty else {
                        throw SchemaError(.invalidValue, path: "\(path)/\(v.key)", "expected an array of non-empty strings")
                    }
                    guard !names.contains(s) else { throw SchemaError(.invalidValue, path: "\(path)/\(v.key)", "'\(s)' is a value of the field itself") }
                    if let other = map[s], other != v.key {
                        throw SchemaError(.invalidValue, path: "\(path)/\(v.key)", "'\(s)' is already a spelling of '\(other)'")
                    }
                    if map[s] == nil { ordered.append((f.key, s)) }
                    map[s] = v.key
                }
            }
            spellings[f.key] = map
        }
        self.init(spellings: spellings, ordered: ordered)
    }

    /// `schema` with each field's spellings appended to its enum: what decoding uses.
    public func decodingSchema(_ schema: OrderedJSON) -> OrderedJSON {
        guard !isEmpty, case .object(var top) = schema, let pi = top.firstIndex(where: { $0.key == "properties" }),
              case .object(var props) = top[pi].value else { return schema }
        for (i, p) in props.enumerated() {
            let extra = ordered.filter { $0.field == p.key }.map { OrderedJSON.string($0.spelling) }
            guard !extra.isEmpty, case .object(var fs) = p.value, let ei = fs.firstIndex(where: { $0.key == "enum" }),
                  case .array(let values) = fs[ei].value else { continue }
            fs[ei].value = .array(values + extra)
            props[i].value = .object(fs)
        }
        top[pi].value = .object(props)
        return .object(top)
    }

    /// `output` with every spelling of a top-level field replaced by the value it stands for.
    public func canonical(_ output: OrderedJSON) -> OrderedJSON {
        guard !isEmpty, case .object(let members) = output else { return output }
        return .object(members.map { m in
            if case .string(let s) = m.value, let v = spellings[m.key]?[s] { return (m.key, .string(v)) }
            return m
        })
    }
}
