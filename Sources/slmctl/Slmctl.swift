// slmctl: command-line client of the slmd daemon. Talks the socket protocol
// (docs/PROTOCOL.md) through SLMProtocol only; it never links the model.
//
// Exit statuses: see ExitStatus.swift (also printed by `slmctl --help`).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import SLMProtocol

let slmctlVersion = SLMDVersion.string

@main
struct Slmctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slmctl",
        abstract: "Talk to the slmd small-language-model daemon.",
        discussion: """
            slmctl connects to the daemon's Unix socket: --socket PATH, else $SLMD_SOCKET, \
            else \(defaultSocketPath) (the slmd.socket unit). Generation streams tokens to \
            stdout as they arrive; --json prints one JSON object per line instead. Ctrl-C \
            during a request cancels it on the daemon.

            \(ExitStatus.helpTable)
            """,
        version: "slmctl \(slmctlVersion) (protocol \(SLMProtocolVersion.current))",
        subcommands: [
            Complete.self, Chat.self, Tokenize.self, Detokenize.self, Status.self, Stats.self,
            Suggest.self, Choose.self, Parse.self, Intents.self, Ping.self, Bench.self, Version.self,
        ]
    )

    /// Parses, runs and exits with the documented status. Usage errors exit 2 (not
    /// ArgumentParser's 64); CtlFailure carries its own status and message.
    static func main() {
        Interrupt.install()
        do {
            var command = try parseAsRoot()
            try command.run()
            Glibc.exit(ExitStatus.ok)
        } catch let failure as CtlFailure {
            if !failure.message.isEmpty { Output.err("slmctl: \(failure.message)") }
            Glibc.exit(failure.status)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                Output.err(fullMessage(for: error))
                Glibc.exit(ExitStatus.usage)
            }
            exit(withError: error)  // help and completion scripts (0), other errors (1)
        }
    }
}
