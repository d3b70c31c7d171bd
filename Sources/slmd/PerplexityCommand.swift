import ArgumentParser
import SLMKernels
import SLMModel
#if canImport(Glibc)
import Glibc
#endif

struct Perplexity: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Perplexity of a text file, computed exactly as llama-perplexity does.",
        discussion: """
            One trailing newline is stripped, the text is tokenized with special tokens as \
            plain text, cut into ⌊n/ctx⌋ chunks, and the second half of each chunk is scored.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Text file to score.")
    var file: String

    @Option(name: .long, help: "Chunk (context) size in tokens.")
    var ctx = 512

    @Flag(name: .long) var json = false

    struct Output: Encodable { let ppl: Double; let n_tokens: Int; let n_chunks: Int; let n_scored: Int; let seconds: Double }

    func run() throws {
        var bytes = try readFile(file)
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        let text = try utf8String(bytes, what: file)
        let model = try options.loadModel()
        let ids = model.tokenizer.encode(text, parseSpecial: false)
        let runner = makeRunner(model, threads: options.threadCount, maxBatch: min(ctx, 512), maxContext: ctx,
                                maxLogits: min(ctx, 512))
        let t0 = monotonicSeconds()
        let r = try SLMModel.Perplexity.evaluate(runner: runner, tokens: ids, context: ctx) { done, total in
            if !json {
                writeStderr("\rchunk \(done)/\(total)")
            }
        }
        let secs = monotonicSeconds() - t0
        if json {
            try printJSON(Output(ppl: r.ppl, n_tokens: ids.count, n_chunks: r.chunks, n_scored: r.scored, seconds: secs))
        } else {
            writeStderr("\n")
            print("perplexity \(r.ppl) over \(r.scored) scored tokens (\(ids.count) tokens, \(r.chunks) chunks of \(ctx)), \(secs) s")
        }
    }
}

/// Flushes stdout (nil flushes every stream; `stdout` itself is not concurrency-safe to name).
func fflushStdout() { fflush(nil) }

func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { buf in _ = write(2, buf.baseAddress, buf.count) }
}
