import ArgumentParser
import SLMModel

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continue a prompt (special tokens parsed, no BOS unless the model asks for one).")

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "File holding the prompt text.")
    var promptFile: String?

    @Option(name: .long, help: "Prompt text (instead of --prompt-file).")
    var prompt: String?

    @Option(name: .long, help: "Most tokens to generate.")
    var maxTokens = 128

    @Option(name: .long, help: "Sampling temperature; 0 is greedy (ties to the lowest id).")
    var temperature: Float = 0

    @Option(name: .long) var topK = 40
    @Option(name: .long) var topP: Float = 0.95
    @Option(name: .long) var minP: Float = 0.05
    @Option(name: .long) var repeatPenalty: Float = 1.0
    @Option(name: .long) var seed: UInt64 = 0

    @Option(name: .long, help: "Stop before this string (repeatable).")
    var stop: [String] = []

    @Option(name: .long, help: "Record the K largest raw logits after the prompt and after each token.")
    var topLogits = 0

    @Option(name: .long, help: "Context size (KV cache tokens).")
    var ctx = 2048

    @Flag(name: .long, help: "Print one JSON object instead of streaming text.")
    var json = false

    struct Output: Encodable {
        let prompt_ids: [Int32]
        let generated_ids: [Int32]
        let text: String
        let finish_reason: String
        let top_logits: [[IdLogit]]?
        let prompt_ms: Double
        let generate_tokens_per_second: Double
    }

    struct IdLogit: Encodable {
        let id: Int32
        let logit: Float
        func encode(to encoder: any Encoder) throws {
            var c = encoder.unkeyedContainer()
            try c.encode(id)
            try c.encode(logit)
        }
    }

    func validate() throws {
        if (promptFile == nil) == (prompt == nil) { throw ValidationError("give exactly one of --prompt-file and --prompt") }
        if maxTokens < 0 { throw ValidationError("--max-tokens must be >= 0") }
        if ctx < 8 { throw ValidationError("--ctx must be at least 8") }
        if topLogits < 0 || topLogits > 1000 { throw ValidationError("--top-logits must be in 0...1000") }
    }

    func run() throws {
        let text = try prompt ?? utf8String(readFile(promptFile!), what: promptFile!)
        let model = try options.loadModel()
        var ids = model.tokenizer.encode(text, parseSpecial: true)
        if model.tokenizer.addBOS, let bos = model.tokenizer.bosID { ids.insert(bos, at: 0) }
        guard !ids.isEmpty else { throw ToolError("the prompt is empty") }
        guard ids.count + maxTokens <= ctx else {
            throw ToolError("prompt (\(ids.count) tokens) + --max-tokens \(maxTokens) exceed --ctx \(ctx)")
        }
        let sampling = SamplingParams(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                      repeatPenalty: repeatPenalty, seed: seed)
        if let bad = sampling.invalidField { throw ValidationError(bad) }
        let runner = makeRunner(model, threads: options.threadCount, maxBatch: min(512, ctx), maxContext: ctx)
        let session = Session(runner: runner, capacity: ctx)
        let opts = GenerationOptions(maxTokens: maxTokens, sampling: sampling, stop: stop, topLogits: topLogits)
        let result = try Generator.run(model: model, session: session, promptIDs: ids, options: opts, now: now) { delta in
            if !json {
                print(delta, terminator: "")
                fflushStdout()
            }
            return true
        }
        if json {
            let n = result.generatedIDs.count
            try printJSON(Output(
                prompt_ids: result.promptIDs, generated_ids: result.generatedIDs, text: result.text,
                finish_reason: result.finishReason.rawValue,
                top_logits: topLogits > 0 ? result.topLogits.map { $0.map { IdLogit(id: $0.id, logit: $0.logit) } } : nil,
                prompt_ms: result.promptSeconds * 1000,
                generate_tokens_per_second: result.generateSeconds > 0 ? Double(max(0, n - 1)) / result.generateSeconds : 0))
        } else {
            print("")
        }
    }
}
