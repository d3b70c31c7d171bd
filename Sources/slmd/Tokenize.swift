import ArgumentParser
import GGUF
import SLMTokenizer
#if canImport(Glibc)
import Glibc
#endif

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize UTF-8 text from standard input (read verbatim, newlines kept).",
        discussion: """
            Like llama.cpp's llama-tokenize: the BOS (and EOS) the model asks for are added \
            unless --no-bos. Only the tokenizer metadata is read, so a vocabulary-only GGUF \
            (such as llama.cpp's models/ggml-vocab-*.gguf) works as well as a full model.
            """)

    @OptionGroup var options: ModelOptions

    @Flag(name: .long, help: "Treat special-token text such as <|im_start|> as plain text.")
    var noParseSpecial = false

    @Flag(name: .long, help: "Do not add the BOS/EOS tokens the model's metadata asks for (tokenizer.ggml.add_bos_token, add_eos_token).")
    var noBos = false

    @Flag(name: .long, help: "Print {\"ids\": [...]} instead of one id per line.")
    var json = false

    struct Output: Encodable { let ids: [Int32] }

    func run() throws {
        let text = try utf8String(readStandardInput(), what: "standard input")
        let path = options.modelPath
        guard access(path, R_OK) == 0 else {
            throw ToolError("model file \(path) is not readable; run scripts/fetch-model or pass --model PATH")
        }
        let tokenizer: Tokenizer
        do {
            tokenizer = try Tokenizer(gguf: GGUFFile(path: path))
        } catch {
            throw ToolError("\(path): \(error)")
        }
        let ids = tokenizer.tokenize(text, addSpecial: !noBos, parseSpecial: !noParseSpecial)
        if json {
            try printJSON(Output(ids: ids))
        } else {
            for id in ids { print(id) }
        }
    }
}
