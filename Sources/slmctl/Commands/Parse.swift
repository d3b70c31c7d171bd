import ArgumentParser
import FoundationEssentials
import SLMProtocol

struct Parse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn an utterance into JSON that is valid under a schema.",
        discussion: """
            The daemon decodes under the JSON Schema (constrained decoding), so the output \
            always parses and validates, with keys in the schema's order. Name an intent the \
            daemon loaded from its intents directory (--intent), or try a schema inline \
            (--schema, with --instruction and --examples: a JSON array of [utterance, object] \
            pairs shown to the model as worked examples). Prints the JSON; --verbose adds each \
            field's confidence (the probability the model gave the chosen value); --json prints \
            {"result": {...}, "confidence": {"field": p, ...}}.
            """)

    @Argument(help: ArgumentHelp("The command to parse, or - for stdin.", valueName: "utterance"))
    var utterance: String

    @Option(help: "Intent loaded by the daemon (see slmctl status).")
    var intent: String?

    @Option(help: "JSON Schema file (instead of --intent).")
    var schema: String?

    @Option(help: "Instruction for the model.")
    var instruction: String?

    @Option(help: "JSON file: an array of [utterance, object] examples.")
    var examples: String?

    @Option(help: "Most tokens to generate.")
    var maxTokens: Int?

    @Flag(help: "Print one JSON object with the result and the confidences.")
    var json = false

    @Flag(name: [.short, .long], help: "Also print each field's confidence (and the token count and time).")
    var verbose = false

    func validate() throws {
        guard (intent == nil) != (schema == nil) else {
            throw ValidationError(intent == nil ? "give --intent NAME or --schema FILE" : "--intent and --schema exclude each other")
        }
    }

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        return String(decoding: data, as: UTF8.self)
    }

    func run() throws {
        let text = utterance == "-" ? readAllStdin() : utterance
        var pairs: [ParseRequest.Example] = []
        if let examples {
            guard case .array(let items)? = try? JSONValue.parse(Array(try read(examples).utf8)) else {
                throw ValidationError("\(examples): expected a JSON array of [utterance, object] pairs")
            }
            for item in items {
                guard case .array(let p) = item, p.count == 2, case .string(let u) = p[0] else {
                    throw ValidationError("\(examples): every example must be [utterance, object]")
                }
                pairs.append(.init(utterance: u, output: p[1]))
            }
        }
        let request = ParseRequest(utterance: text, intent: intent, schema: try schema.map(read), instruction: instruction,
                                   examples: pairs, maxTokens: maxTokens)
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .parse(request), connection: connection, json: json)
        guard case .parse(let r) = reply.body else { throw unexpected(reply) }
        // Confidences in the output's key order (the wire object has none).
        let keys = r.confidence.keys.sorted { keyOffset($0, in: r.text) < keyOffset($1, in: r.text) }
        if json {
            Output.jsonLine(.object(["result": r.result, "confidence": .object(r.confidence.mapValues { .double(($0 * 1e4).rounded() / 1e4) }),
                                     "complete": .bool(r.complete)]))
        } else {
            Output.out(r.text + "\n")
            if verbose {
                for k in keys { Output.out("  \(k): \(formatFixed(r.confidence[k]!, 3))\n") }
                Output.out("  (\(r.generatedTokens) tokens, \(Int(r.ms.rounded())) ms)\n")
            }
        }
        if !r.complete { throw CtlFailure(ExitStatus.failure, "the output was cut short by max_tokens") }
    }
}

/// Where `"key":` first occurs in compact JSON text (its end when absent).
func keyOffset(_ key: String, in text: String) -> Int {
    let needle = Array("\"\(key)\":".utf8), hay = Array(text.utf8)
    guard needle.count <= hay.count else { return hay.count }
    for i in 0...(hay.count - needle.count) where hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
    return hay.count
}
