import ArgumentParser
import FoundationEssentials
import SLMProtocol

struct Parse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn an utterance into JSON that is valid under a schema.",
        discussion: """
            The daemon decodes under the JSON Schema (constrained decoding), so the output \
            always parses and validates, with keys in the schema's order. --examples takes a \
            JSON array of [utterance, object] pairs shown to the model as worked examples. \
            Prints the JSON; --json prints {"result": {...}, "complete": true}.
            """)

    @Argument(help: ArgumentHelp("The command to parse, or - for stdin.", valueName: "utterance"))
    var utterance: String

    @Option(help: "JSON Schema file.")
    var schema: String

    @Option(help: "Instruction for the model.")
    var instruction: String?

    @Option(help: "JSON file: an array of [utterance, object] examples.")
    var examples: String?

    @Option(help: "Most tokens to generate.")
    var maxTokens: Int?

    @Flag(help: "Print one JSON object with the result.")
    var json = false

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
        let request = ParseRequest(utterance: text, schema: try read(schema), instruction: instruction, examples: pairs,
                                   maxTokens: maxTokens)
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .parse(request), connection: connection, json: json)
        guard case .parse(let r) = reply.body else { throw unexpected(reply) }
        if json {
            Output.jsonLine(.object(["result": r.result, "complete": .bool(r.complete)]))
        } else {
            Output.out(r.text + "\n")
        }
        if !r.complete { throw CtlFailure(ExitStatus.failure, "the output was cut short by max_tokens") }
    }
}
