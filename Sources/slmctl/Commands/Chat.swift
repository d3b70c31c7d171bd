import ArgumentParser
import SLMProtocol

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with the model (rendered with its chat template).",
        discussion: """
            With MESSAGE: one user turn, the reply streamed to stdout. MESSAGE - (or no \
            MESSAGE with stdin not a terminal) reads the message from stdin. With no MESSAGE \
            on a terminal: an interactive session that keeps the conversation history; \
            /reset forgets it, /exit or Ctrl-D ends the session, Ctrl-C cancels the reply \
            being generated.
            """)

    @Argument(help: ArgumentHelp("The user message, or - to read it from stdin.", valueName: "message"))
    var message: String?

    @Option(help: ArgumentHelp("A system message placed before the conversation.", valueName: "text"))
    var system: String?

    @OptionGroup(title: "Generation options") var generation: GenerationArguments
    @OptionGroup(title: "Output options") var output: OutputOptions
    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func run() throws {
        var history: [ChatRequest.Message] = []
        if let system { history.append(.init(role: .system, content: system)) }
        if message == nil && Output.stdinIsTTY {
            return try interactive(history)
        }
        let text = (message == nil || message == "-") ? readAllStdin() : message!
        history.append(.init(role: .user, content: text))
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        _ = try runGeneration(conn, .chat(ChatRequest(messages: history, options: generation.options)),
                              output: output, timeout: connection.timeout)
    }

    private func interactive(_ start: [ChatRequest.Message]) throws {
        let (conn, info) = try connection.open()
        defer { conn.shutdown() }
        var history = start
        let name = info.model["name"].flatMap { if case .string(let s) = $0 { return s } else { return nil } }
        Output.err("slmctl chat with \(name ?? "slmd") — /reset forgets the conversation, /exit or Ctrl-D ends it")
        while true {
            Output.out("> ")
            guard let line = readLine() else {
                if Interrupt.pending { throw CtlFailure(ExitStatus.cancelled, "") }
                Output.out("\n")
                return
            }
            let input = line.trimmingWhitespace()
            if input.isEmpty { continue }
            if input == "/exit" || input == "/quit" { return }
            if input == "/reset" {
                history = start
                Output.err("(conversation forgotten)")
                continue
            }
            history.append(.init(role: .user, content: line))
            do {
                let outcome = try runGeneration(conn, .chat(ChatRequest(messages: history, options: generation.options)),
                                                output: output, timeout: connection.timeout)
                history.append(.init(role: .assistant, content: outcome.text))
            } catch let failure as CtlFailure where failure.status == ExitStatus.cancelled {
                // The reply was cancelled: drop the unanswered turn and keep the session.
                history.removeLast()
                Interrupt.reset()
                Output.err("(cancelled)")
            } catch let failure as CtlFailure where failure.serverError != nil {
                history.removeLast()
                Output.err("slmctl: \(failure.message)")
            }
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
