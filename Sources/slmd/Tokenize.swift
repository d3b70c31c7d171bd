import ArgumentParser
import SLMModel

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize UTF-8 text from standard input (read verbatim, newlines kept).")

    @OptionGroup var options: ModelOptions

    @Flag(name: .long, help: "Treat special-token text such as <|im_start|> as plain text.")
    var noParseSpecial = false

    @Flag(name: .long, help: "Print {\"ids\": [...]} instead of one id per line.")
    var json = false

    struct Output: Encodable { let ids: [Int32] }

    func run() throws {
        let text = try utf8String(readStandardInput(), what: "standard input")
        let model = try options.loadModel()
        let ids = model.tokenizer.encode(text, parseSpecial: !noParseSpecial)
        if json {
            try printJSON(Output(ids: ids))
        } else {
            for id in ids { print(id) }
        }
    }
}
