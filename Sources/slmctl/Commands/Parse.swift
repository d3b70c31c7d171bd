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
            field's confidence (the probability the model gave the chosen value) and the match \
            score; --json prints {"result": {...} | null, "confidence": {"field": p, ...}, \
            "matched": bool, "match_score": p, "violations": [...], "needs_confirmation": [...]}.

            When the utterance is not a command of the schema (its match score is below the \
            operating point, --min-match-score, else the intent's, else the daemon's), or the \
            model wanted a value the schema cannot hold (a violation: 180 where the maximum is \
            100, a device the enum lacks), the result is null, the reason goes to stderr and \
            the exit status is 9. Act only on exit status 0.
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

    @Option(help: ArgumentHelp("Least match score (0...1) a command needs (default: the intent's, else the daemon's).", valueName: "p"))
    var minMatchScore: Double?

    @Flag(help: "Print one JSON object with the result, the confidences and whether it matched.")
    var json = false

    @Flag(name: [.short, .long], help: "Also print each field's confidence (and the token count and time).")
    var verbose = false

    func validate() throws {
        guard (intent == nil) != (schema == nil) else {
            throw ValidationError(intent == nil ? "give --intent NAME or --schema FILE" : "--intent and --schema exclude each other")
        }
        if let p = minMatchScore, !(0...1).contains(p) { throw ValidationError("--min-match-score must be in 0...1") }
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
                                   examples: pairs, maxTokens: maxTokens, minMatchScore: minMatchScore)
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .parse(request), connection: connection, json: json)
        guard case .parse(let r) = reply.body else { throw unexpected(reply) }
        // Confidences in the output's key order (the wire object has none).
        let keys = r.confidence.keys.sorted { keyOffset($0, in: r.text) < keyOffset($1, in: r.text) }
        let round4: (Double) -> JSONValue = { .double(($0 * 1e4).rounded() / 1e4) }
        if json {
            var out: JSONObject = ["result": r.result, "confidence": .object(r.confidence.mapValues(round4)),
                                   "complete": .bool(r.complete), "matched": .bool(r.matched),
                                   "violations": .array(r.violations.map {
                                       .object(["field": .string($0.field), "wanted": $0.wanted, "reason": .string($0.reason)])
                                   }),
                                   "needs_confirmation": .array(r.needsConfirmation.map { .string($0) })]
            out["match_score"] = r.matchScore.map(round4)
            Output.jsonLine(.object(out))
        } else {
            Output.out(r.text + "\n")
            if verbose {
                for k in keys { Output.out("  \(k): \(formatFixed(r.confidence[k]!, 3))\(r.needsConfirmation.contains(k) ? " (confirm)" : "")\n") }
                if let score = r.matchScore { Output.out("  match score: \(formatFixed(score, 3))\n") }
                Output.out("  (\(r.generatedTokens) tokens, \(Int(r.ms.rounded())) ms)\n")
            }
        }
        if !r.complete { throw CtlFailure(ExitStatus.failure, "the output was cut short by max_tokens") }
        if !r.matched { throw CtlFailure(ExitStatus.noMatch, Self.whyUnmatched(r)) }
    }

    /// The stderr line for an unmatched parse: the violations, else the score.
    static func whyUnmatched(_ r: ParseResult) -> String {
        if !r.violations.isEmpty {
            return "no match: " + r.violations.map { "\($0.field): \(String(decoding: $0.wanted.serialized(), as: UTF8.self)) is \($0.reason)" }
                .joined(separator: "; ")
        }
        return "no match: not a command of this schema (match score \(formatFixed(r.matchScore ?? 0, 3)) is below the operating point)"
    }
}

/// Where `"key":` first occurs in compact JSON text (its end when absent).
func keyOffset(_ key: String, in text: String) -> Int {
    let needle = Array("\"\(key)\":".utf8), hay = Array(text.utf8)
    guard needle.count <= hay.count else { return hay.count }
    for i in 0...(hay.count - needle.count) where hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
    return hay.count
}
