import FoundationEssentials
import SLMConstraint
import SLMProtocol
import Synchronization
import SLMLimits

/// A named `parse` target: a JSON Schema with the instruction and worked examples that
/// make a tiny model fill it well. Loaded from the intents directory so a gateway's
/// requests carry only the intent name and the utterance.
public struct Intent: Sendable {
    public let name: String
    /// File it came from (for messages and `status`).
    public let source: String
    public let description: String?
    /// The schema decoding uses, as compact JSON text in its own key order (the output's key
    /// order): the intent's schema with its synonyms added to the enums.
    public let schemaText: String
    /// The schema as the file gives it (compact, its own key order), without the synonyms:
    /// what the `intents` op shows a client, whose replies hold only these values.
    public let declaredSchemaText: String
    public let automaton: SchemaAutomaton
    /// Extra spellings of enum values, mapped back to the values in replies.
    public let synonyms: Synonyms
    /// The intent's operating point (`min_match_score`) and `confirm_below`, when it sets them.
    public let minMatchScore: Double?
    public let confirmBelow: Double?
    public let instruction: String?
    /// Utterance and expected output as compact JSON, keys in the schema's order, each
    /// checked against the schema at load time.
    public let examples: [(utterance: String, output: String)]
    public let maxTokens: Int?
}

/// Why an intent file was not loaded.
public struct IntentError: Error, Sendable, CustomStringConvertible {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
}

/// The loaded intents, swapped whole on reload so a request sees one consistent set.
public final class IntentRegistry: Sendable {
    private let current: Mutex<[String: Intent]>

    public init(_ intents: [String: Intent] = [:]) { current = Mutex(intents) }

    public func intent(named name: String) -> Intent? { current.withLock { $0[name] } }
    public var names: [String] { current.withLock { $0.keys.sorted() } }
    /// Every loaded intent, sorted by name.
    public var all: [Intent] { current.withLock { $0.values.sorted { $0.name < $1.name } } }
    public var count: Int { current.withLock { $0.count } }
    public func replace(with intents: [String: Intent]) { current.withLock { $0 = intents } }

    /// Most intent files read from one directory; more is a configuration mistake. With
    /// each compiled schema capped (`JSONSchemaCompiler.maxTrieNodes`), this bounds the
    /// memory intents can hold to about 64 × 1 MiB.
    public static let maxFiles = 64
    /// Largest intent file accepted.
    public static let maxFileBytes = 1 << 20
    /// Most examples per intent (each one costs prompt tokens on every cold request).
    public static let maxExamples = Int(Limits.parseExamples.upperBound)

    /// Reads every `*.json` file of `directory` (sorted by name). A missing directory is
    /// an empty set, not an error: intents are optional.
    public static func load(directory: String) -> (intents: [String: Intent], errors: [IntentError]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return ([:], []) }
        var intents: [String: Intent] = [:]
        var errors: [IntentError] = []
        let files = names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted()
        if files.count > maxFiles {
            errors.append(IntentError(file: directory, "\(files.count) intent files; at most \(maxFiles) are read"))
        }
        for file in files.prefix(maxFiles) {
            let path = directory.hasSuffix("/") ? directory + file : directory + "/" + file
            do {
                let intent = try loadFile(path)
                if let other = intents[intent.name] {
                    throw IntentError(file: path, "intent '\(intent.name)' is already defined by \(other.source)")
                }
                intents[intent.name] = intent
            } catch let e as IntentError {
                errors.append(e)
            } catch {
                errors.append(IntentError(file: path, "\(error)"))
            }
        }
        return (intents, errors)
    }

    /// Parses and compiles one intent file: `{"name"?, "description"?, "instruction"?,
    /// "schema", "examples"?, "max_tokens"?, "synonyms"?, "min_match_score"?, "confirm_below"?}`.
    public static func loadFile(_ path: String) throws(IntentError) -> Intent {
        let data: [UInt8]
        do { data = try readBoundedRegularFile(path, maxBytes: maxFileBytes) } catch { throw IntentError(file: path, error.message) }
        guard let text = String(validating: data, as: UTF8.self) else { throw IntentError(file: path, "not valid UTF-8") }
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let stem = base.hasSuffix(".json") ? String(base.dropLast(5)) : base
        return try parse(text, file: path, defaultName: stem)
    }

    /// The intent described by `text` (the contents of an intent file).
    public static func parse(_ text: String, file: String, defaultName: String) throws(IntentError) -> Intent {
        func fail(_ m: String) -> IntentError { IntentError(file: file, m) }
        let doc: OrderedJSON
        do { doc = try OrderedJSON(parsing: text) } catch { throw fail("\(error)") }
        guard case .object(let members) = doc else { throw fail("expected a JSON object") }
        let known: Set = ["name", "description", "instruction", "schema", "examples", "max_tokens", "synonyms",
                          "min_match_score", "confirm_below"]
        if let unknown = members.first(where: { !known.contains($0.key) }) {
            throw fail("unknown key '\(unknown.key)' (expected \(known.sorted().joined(separator: ", ")))")
        }
        func string(_ key: String) throws(IntentError) -> String? {
            guard let v = doc[key] else { return nil }
            guard case .string(let s) = v else { throw fail("'\(key)' must be a string") }
            return s
        }
        let name = try string("name") ?? defaultName
        guard !name.isEmpty, name.utf8.count <= 64,
              name.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x5F || $0 == 0x2D || $0 == 0x2E })
        else { throw fail("intent name '\(name)' must be 1–64 characters of A–Z, a–z, 0–9, _ - .") }
        guard let schema = doc["schema"] else { throw fail("missing 'schema'") }
        var synonyms = Synonyms.none
        if let table = doc["synonyms"] {
            do { synonyms = try Synonyms(table, schema: schema) } catch { throw fail("\(error.path): \(error.message)") }
        }
        let decoding = synonyms.decodingSchema(schema)
        let automaton: SchemaAutomaton
        do { automaton = try JSONSchemaCompiler.compile(decoding) } catch { throw fail("schema: \(error)") }
        var examples: [(utterance: String, output: String)] = []
        if let ex = doc["examples"] {
            guard case .array(let items) = ex else { throw fail("'examples' must be an array of [utterance, object] pairs") }
            guard items.count <= maxExamples else { throw fail("\(items.count) examples; at most \(maxExamples)") }
            for (n, item) in items.enumerated() {
                guard case .array(let pair) = item, pair.count == 2, case .string(let u) = pair[0] else {
                    throw fail("examples[\(n)]: expected [utterance, object]")
                }
                let output = canonical(pair[1], schema: schema).compactText
                guard automaton.accepts(Array(output.utf8)) else {
                    throw fail("examples[\(n)]: \(output) does not satisfy the schema")
                }
                examples.append((u, output))
            }
        }
        var maxTokens: Int?
        if let m = doc["max_tokens"] {
            guard case .number(let t) = m, let v = Int(t), Limits.parseMaxTokens.contains(Int64(v)) else {
                throw fail("'max_tokens' must be an integer in \(Limits.parseMaxTokens.lowerBound)...\(Limits.parseMaxTokens.upperBound)")
            }
            maxTokens = v
        }
        func probability(_ key: String) throws(IntentError) -> Double? {
            guard let v = doc[key] else { return nil }
            // min_match_score and confirm_below: both probabilities, as in a request.
            guard case .number(let t) = v, let p = Double(t), Limits.minMatchScore.contains(p) else {
                throw fail("'\(key)' must be a number in 0...1")
            }
            return p
        }
        return Intent(name: name, source: file, description: try string("description"), schemaText: decoding.compactText,
                      declaredSchemaText: schema.compactText,
                      automaton: automaton, synonyms: synonyms, minMatchScore: try probability("min_match_score"),
                      confirmBelow: try probability("confirm_below"), instruction: try string("instruction"),
                      examples: examples, maxTokens: maxTokens)
    }
}

/// `value` with object members in the order of `schema`'s `properties` (recursively, through
/// `items` and `anyOf`-free nesting); members the schema does not list keep their order at
/// the end. Examples must show the model the exact layout constrained decoding will produce.
func canonical(_ value: OrderedJSON, schema: OrderedJSON?) -> OrderedJSON {
    switch value {
    case .object(let members):
        guard case .object(let props)? = schema?["properties"] else {
            return .object(members.map { ($0.key, canonical($0.value, schema: nil)) })
        }
        var out: [(key: String, value: OrderedJSON)] = []
        for p in props {
            if let m = members.first(where: { $0.key == p.key }) { out.append((m.key, canonical(m.value, schema: p.value))) }
        }
        for m in members where !props.contains(where: { $0.key == m.key }) { out.append((m.key, canonical(m.value, schema: nil))) }
        return .object(out)
    case .array(let items):
        return .array(items.map { canonical($0, schema: schema?["items"]) })
    default:
        return value
    }
}

extension OrderedJSON {
    /// The same value from the wire representation (whose objects have no order).
    init(_ v: JSONValue) {
        switch v {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .number(String(i))
        case .double(let d): self = .number(d.isFinite ? "\(d)" : "0")
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map(OrderedJSON.init))
        case .object(let o): self = .object(o.keys.sorted().map { ($0, OrderedJSON(o[$0]!)) })
        }
    }
}
