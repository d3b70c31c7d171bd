import ArgumentParser
import SLMProtocol

struct Ping: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that the daemon answers (exit 0), e.g. for health checks.",
        discussion: "Connects, negotiates the protocol version and sends `ping`. Prints nothing with --quiet.",
        aliases: ["health"])

    @Flag(name: [.short, .long], help: "Print nothing; only the exit status tells.")
    var quiet = false

    @Flag(help: "Print one JSON object with the round-trip time.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func run() throws {
        let start = monotonicSeconds()
        let (conn, info) = try connection.open()
        defer { conn.shutdown() }
        let t0 = monotonicSeconds()
        let reply = try quickCall(conn, .ping, connection: connection, json: json)
        let rtt = (monotonicSeconds() - t0) * 1000
        guard case .ping = reply.body else { throw unexpected(reply) }
        if quiet { return }
        if json {
            Output.jsonLine(.object(["ok": true, "rtt_ms": .double(rtt), "connect_ms": .double((t0 - start) * 1000),
                                     "server_version": .string(info.serverVersion),
                                     "protocol_version": .int(Int64(info.protocolVersion))]))
        } else {
            Output.out("slmd \(info.serverVersion) is alive at \(connection.socketPath): ping \(fmt(rtt, 2)) ms\n")
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the versions of slmctl, the protocol and (if it answers) the daemon.",
        discussion: "Exits 3 after printing slmctl's version when the daemon is not running (unless --client).")

    @Flag(help: "Only slmctl's own version; do not connect.")
    var client = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func run() throws {
        Output.out("slmctl \(slmctlVersion) (protocol \(SLMProtocolVersion.current))\n")
        if client { return }
        let (conn, info) = try connection.open()
        conn.shutdown()
        var model = info.model["name"]?.text ?? "unknown model"
        if let q = info.model["quantization"] { model += " \(q.text)" }
        Output.out("slmd \(info.serverVersion) (protocol \(info.protocolVersion)), \(model)\n")
    }
}
