// Option groups shared by the subcommands: where the daemon is, how to print, and the
// generation options (1:1 with the protocol's, docs/PROTOCOL.md §5.5).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import FoundationEssentials
import SLMProtocol
import SLMLimits

/// The daemon's default socket: the path of systemd's slmd.socket unit.
let defaultSocketPath = "/run/slmd.sock"

struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Socket of the daemon (default: $SLMD_SOCKET, else \(defaultSocketPath)).", valueName: "path"))
    var socket: String?

    @Option(name: .long, help: ArgumentHelp(
        "Seconds to wait for each answer from the daemon (default: 10 for quick requests, no limit while generating).",
        valueName: "seconds"))
    var timeout: Double?

    func validate() throws {
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be a positive number of seconds") }
        if let socket, socket.isEmpty { throw ValidationError("--socket must not be empty") }
    }

    /// `--socket`, else `$SLMD_SOCKET` (when non-empty), else /run/slmd.sock.
    var socketPath: String {
        if let socket { return socket }
        if let env = getenv("SLMD_SOCKET"), env.pointee != 0 { return String(cString: env) }
        return defaultSocketPath
    }

    /// Timeout for requests that answer at once (hello, ping, status, tokenize...).
    var quickTimeout: Double { timeout ?? 10 }

    /// Connects and negotiates the protocol version with `hello`.
    func open() throws -> (Connection, ServerInfo) {
        let connection: Connection
        do { connection = try Connection(path: socketPath) } catch { throw CtlFailure.connection(error) }
        let info = try hello(connection)
        return (connection, info)
    }

    private func hello(_ connection: Connection) throws -> ServerInfo {
        let result: CallResult
        do {
            result = try connection.call(
                .hello(HelloRequest(client: "slmctl \(slmctlVersion)", maxVersion: Int(SLMProtocolVersion.current))),
                timeout: quickTimeout)
        } catch {
            throw CtlFailure.connection(error)
        }
        switch result {
        case .failure(let e):
            throw CtlFailure.server(e)
        case .reply(let reply):
            guard case .hello(let info) = reply.body else {
                throw CtlFailure(ExitStatus.failure, "slmd answered hello with a '\(reply.body.op.rawValue)' reply")
            }
            guard info.protocolVersion == Int(SLMProtocolVersion.current) else {
                throw CtlFailure.versionMismatch(server: info.protocolVersion, serverVersion: info.serverVersion)
            }
            return info
        }
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Machine-readable output: one JSON object per line (token events, then the final reply or error).")
    var json = false

    @Flag(name: [.short, .long], help: "Print the usage summary (tokens, timings) on stderr even when stdout is not a terminal.")
    var verbose = false

    /// Whether to print the human usage summary on stderr.
    var showUsage: Bool { !json && (verbose || Output.stdoutIsTTY) }
}

struct GenerationArguments: ParsableArguments {
    // Ranges and texts come from SLMLimits, the table the daemon checks against.
    @Option(help: ArgumentHelp("Generate at most this many tokens (\(Limits.maxTokens.rangeText)).", valueName: "n"))
    var maxTokens: Int?

    @Option(help: ArgumentHelp("Sampling temperature, 0 = greedy (\(Limits.temperature.rangeText)).", valueName: "t"))
    var temperature: Double?

    @Option(help: ArgumentHelp("Keep the k most likely tokens, 0 = off (\(Limits.topK.rangeText)).", valueName: "k"))
    var topK: Int?

    @Option(help: ArgumentHelp("Nucleus sampling mass, 1 = off (\(Limits.topP.rangeText)).", valueName: "p"))
    var topP: Double?

    @Option(help: ArgumentHelp("Drop tokens below p × the top probability, 0 = off (\(Limits.minP.rangeText)).", valueName: "p"))
    var minP: Double?

    @Option(help: ArgumentHelp("Penalty for recently generated tokens, 1 = off (\(Limits.repeatPenalty.rangeText)).", valueName: "x"))
    var repeatPenalty: Double?

    @Option(help: ArgumentHelp("How many recent tokens the repeat penalty looks at, 0 = off (\(Limits.repeatWindow.rangeText)).",
                               valueName: "n"))
    var repeatWindow: Int?

    @Option(help: ArgumentHelp("Seed for reproducible sampling (\(Limits.seed.rangeText)).", valueName: "n"))
    var seed: UInt64?

    @Option(help: ArgumentHelp("Stop before this string (repeatable, at most \(Limits.stopCount.upperBound), "
                               + "\(Limits.stopBytes.rangeText) bytes each).", valueName: "text"))
    var stop: [String] = []

    @Option(help: ArgumentHelp("Wall-clock budget in milliseconds from receipt (\(Limits.deadlineMS.rangeText)).", valueName: "ms"))
    var deadlineMs: Int?

    @Flag(help: "Do not stream tokens: wait for the whole text in the final reply.")
    var noStream = false

    @Option(help: ArgumentHelp("Constrain the output to one JSON value valid under this JSON Schema file.", valueName: "file"))
    var schema: String?

    func validate() throws {
        func check(_ ok: Bool, _ text: String) throws { if !ok { throw ValidationError(text) } }
        func check<B>(_ value: B?, _ limit: Limit<B>, _ flag: String) throws {
            if let value { try check(limit.contains(value), "\(flag) must be in \(limit.rangeText)") }
        }
        try check(maxTokens.map(Int64.init), Limits.maxTokens, "--max-tokens")
        try check(temperature, Limits.temperature, "--temperature")
        try check(topK.map(Int64.init), Limits.topK, "--top-k")
        try check(topP, Limits.topP, "--top-p")
        try check(minP, Limits.minP, "--min-p")
        try check(repeatPenalty, Limits.repeatPenalty, "--repeat-penalty")
        try check(repeatWindow.map(Int64.init), Limits.repeatWindow, "--repeat-window")
        try check(seed.map { Int64(clamping: $0) }, Limits.seed, "--seed")
        try check(Limits.stopCount.contains(Int64(stop.count)), "at most \(Limits.stopCount.upperBound) --stop strings")
        for s in stop {
            try check(Limits.stopBytes.contains(Int64(s.utf8.count)), "each --stop string must be \(Limits.stopBytes.rangeText) bytes")
        }
        try check(deadlineMs.map(Int64.init), Limits.deadlineMS, "--deadline-ms")
        if let schema { try check(FileManager.default.isReadableFile(atPath: schema), "cannot read the schema file \(schema)") }
    }

    var options: GenerationOptions {
        var o = GenerationOptions(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, minP: minP,
                          repeatPenalty: repeatPenalty, repeatWindow: repeatWindow, seed: seed, stop: stop,
                          deadlineMS: deadlineMs, stream: !noStream)
        o.schema = schema.flatMap { FileManager.default.contents(atPath: $0) }.map { String(decoding: $0, as: UTF8.self) }
        return o
    }
}
