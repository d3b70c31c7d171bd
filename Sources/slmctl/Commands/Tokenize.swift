import ArgumentParser
import SLMProtocol

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text with the daemon's tokenizer.",
        discussion: "Ids are printed space-separated on one line, ready for `slmctl detokenize`. Use - to read the text from stdin.")

    @Argument(help: ArgumentHelp("The text, or - to read it from stdin.", valueName: "text"))
    var text: String

    @Flag(help: "Parse special-token text (e.g. <|im_start|>) as special tokens.")
    var parseSpecial = false

    @Flag(help: "Print the daemon's reply as one JSON object.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func run() throws {
        let input = text == "-" ? readAllStdin() : text
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .tokenize(TokenizeRequest(text: input, parseSpecial: parseSpecial)),
                                  connection: connection, json: json)
        guard case .tokenize(let ids) = reply.body else { throw unexpected(reply) }
        if json { Output.jsonLine(payload: reply.payload()) } else {
            Output.out(ids.map(String.init).joined(separator: " ") + "\n")
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the text of token ids.",
        discussion: "Ids may be separate arguments or comma/space-separated lists (`1 2 3`, `1,2,3`, `[1, 2, 3]`).")

    @Argument(help: ArgumentHelp("Token ids.", valueName: "ids"))
    var ids: [String]

    @Flag(help: "Print the daemon's reply as one JSON object.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    var parsedIDs: [Int] {
        get throws {
            var out: [Int] = []
            for arg in ids {
                for piece in arg.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "[" || $0 == "]" }) {
                    guard let id = Int(piece), id >= 0, id <= Int(Int32.max) else {
                        throw ValidationError("'\(piece)' is not a token id (an integer in 0...\(Int32.max))")
                    }
                    out.append(id)
                }
            }
            return out
        }
    }

    func validate() throws {
        if try parsedIDs.isEmpty { throw ValidationError("give at least one token id") }
    }

    func run() throws {
        let list = try parsedIDs
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .detokenize(DetokenizeRequest(ids: list)), connection: connection, json: json)
        guard case .detokenize(let text) = reply.body else { throw unexpected(reply) }
        if json { Output.jsonLine(payload: reply.payload()) } else {
            Output.out(text)
            if Output.stdoutIsTTY && !text.hasSuffix("\n") { Output.out("\n") }
        }
    }
}

/// One request that answers at once; a server error becomes a CtlFailure (and a JSON line with --json).
func quickCall(_ conn: Connection, _ body: RequestBody, connection: ConnectionOptions, json: Bool) throws -> Reply {
    let result: CallResult
    do { result = try conn.call(body, timeout: connection.quickTimeout) } catch { throw CtlFailure.connection(error) }
    switch result {
    case .reply(let reply): return reply
    case .failure(let e):
        if json { Output.jsonLine(payload: e.payload()) }
        throw CtlFailure.server(e)
    }
}

func unexpected(_ reply: Reply) -> CtlFailure {
    CtlFailure(ExitStatus.failure, "slmd answered with an unexpected '\(reply.body.op.rawValue)' reply")
}
