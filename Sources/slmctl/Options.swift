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
    @Option(help: ArgumentHelp("Generate at most this many tokens (1...1048576).", valueName: "n"))
    var maxTokens: Int?

    @Option(help: ArgumentHelp("Sampling temperature, 0 = greedy (0...100).", valueName: "t"))
    var temperature: Double?

    @Option(help: ArgumentHelp("Keep the k most likely tokens, 0 = off.", valueName: "k"))
    var topK: Int?

    @Option(help: ArgumentHelp("Nucleus sampling mass, 1 = off (0...1).", valueName: "p"))
    var topP: Double?

    @Option(help: ArgumentHelp("Drop tokens below p × the top probability, 0 = off (\(GenerationOptions.Bounds.minP)).", valueName: "p"))
    var minP: Double?

    @Option(help: ArgumentHelp("Penalty for recently generated tokens, 1 = off (above 0, at most \(GenerationOptions.Bounds.repeatPenalty.upperBound)).", valueName: "x"))
    var repeatPenalty: Double?

    @Option(help: ArgumentHelp("How many recent tokens the repeat penalty looks at, 0 = off (0...\(GenerationOptions.Bounds.repeatWindow)).", valueName: "n"))
    var repeatWindow: Int?

    @Option(help: ArgumentHelp("Seed for reproducible sampling (0...2^53-1).", valueName: "n"))
    var seed: UInt64?

    @Option(help: ArgumentHelp("Stop before this string (repeatable, at most 8, 1...64 bytes each).", valueName: "text"))
    var stop: [String] = []

    @Option(help: ArgumentHelp("Wall-clock budget in milliseconds from receipt (1...86400000).", valueName: "ms"))
    var deadlineMs: Int?

    @Flag(help: "Do not stream tokens: wait for the whole text in the final reply.")
    var noStream = false

    @Option(help: ArgumentHelp("Constrain the output to one JSON value valid under this JSON Schema file.", valueName: "file"))
    var schema: String?

    func validate() throws {
        typealias B = GenerationOptions.Bounds
        func check(_ ok: Bool, _ text: String) throws { if !ok { throw ValidationError(text) } }
        if let v = maxTokens { try check(v >= 1 && Int64(v) <= B.maxTokens, "--max-tokens must be in 1...\(B.maxTokens)") }
        if let v = temperature { try check(B.temperature.contains(v), "--temperature must be in 0...100") }
        if let v = topK { try check(v >= 0 && Int64(v) <= B.topK, "--top-k must be in 0...\(B.topK)") }
        if let v = topP { try check(B.topP.contains(v) && v > B.topP.lowerBound, "--top-p must be above 0 and at most 1") }
        if let v = minP { try check(B.minP.contains(v), "--min-p must be in \(B.minP)") }
        if let v = repeatPenalty {
            try check(B.repeatPenalty.contains(v) && v > 0, "--repeat-penalty must be above 0 and at most \(B.repeatPenalty.upperBound)")
        }
        if let v = repeatWindow { try check(v >= 0 && Int64(v) <= B.repeatWindow, "--repeat-window must be in 0...\(B.repeatWindow)") }
        if let v = seed { try check(v <= UInt64(B.seed), "--seed must be in 0...\(B.seed)") }
        try check(stop.count <= B.stopCount, "at most \(B.stopCount) --stop strings")
        for s in stop { try check(!s.isEmpty && s.utf8.count <= B.stopBytes, "each --stop string must be 1...\(B.stopBytes) bytes") }
        if let v = deadlineMs { try check(v >= 1 && Int64(v) <= B.deadlineMS, "--deadline-ms must be in 1...\(B.deadlineMS)") }
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
