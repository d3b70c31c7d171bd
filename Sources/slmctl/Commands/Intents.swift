import ArgumentParser
import SLMProtocol

struct Intents: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the intents the daemon has loaded, with their descriptions and schemas.",
        discussion: """
            One intent per paragraph: its name (what `slmctl parse --intent` takes), its \
            description, and its JSON Schema (the shape and key order of a parse's result). \
            --json prints the reply's {"intents": [{"name", "description", "schema"}, …]}.
            """)

    @Flag(help: "Print one JSON object.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func run() throws {
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .intents, connection: connection, json: json)
        guard case .intents(let list) = reply.body else { throw unexpected(reply) }
        if json {
            Output.jsonLine(payload: reply.payload())
            return
        }
        if list.isEmpty {
            Output.out("no intents are loaded (intents_dir in slmd.conf)\n")
            return
        }
        Output.out(list.map { i in
            [i.name, i.description.map { "  " + $0 }, "  schema: " + i.schema].compactMap { $0 }.joined(separator: "\n")
        }.joined(separator: "\n\n") + "\n")
    }
}
