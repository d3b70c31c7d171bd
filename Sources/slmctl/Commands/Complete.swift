import ArgumentParser
import SLMProtocol

struct Complete: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a raw prompt, streaming the generated text.",
        discussion: """
            The prompt is sent as is (no chat template). Use - to read it from stdin. \
            Special-token text such as <|im_start|> stays plain text unless --parse-special. \
            Ctrl-C cancels the request on the daemon and exits 130.
            """)

    @Argument(help: ArgumentHelp("The prompt, or - to read it from stdin.", valueName: "prompt"))
    var prompt: String

    @Flag(help: "Parse special-token text in the prompt (e.g. <|im_start|>) as special tokens.")
    var parseSpecial = false

    @OptionGroup(title: "Generation options") var generation: GenerationArguments
    @OptionGroup(title: "Output options") var output: OutputOptions
    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func run() throws {
        let text = prompt == "-" ? readAllStdin() : prompt
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        _ = try runGeneration(conn, .complete(CompleteRequest(prompt: text, parseSpecial: parseSpecial,
                                                              options: generation.options)),
                              output: output, timeout: connection.timeout)
    }
}
