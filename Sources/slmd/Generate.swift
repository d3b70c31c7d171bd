import ArgumentParser
import SLMKernels
import SLMModel
import SLMConstraint

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

    @Option(name: .long, help: "Constrain the output to JSON valid under this JSON Schema file (prints constraint statistics).")
    var schema: String?

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
        if let schema {
            let automaton = try JSONSchemaCompiler.compile(try utf8String(readFile(schema), what: schema))
            let t0 = monotonicSeconds()
            let vocabulary = ConstraintVocabulary(tokenizer: model.tokenizer)
            let decoder = ConstrainedDecoder(automaton: automaton, vocabulary: vocabulary)
            let t1 = monotonicSeconds()
            let (out, stats) = try ConstrainedGenerator.run(model: model, session: session, promptIDs: ids, decoder: decoder,
                                                             options: opts, scoreTokens: false, now: monotonicSeconds)
            let n = out.generatedIDs.count
            print(out.text)
            // Tokens per second of the whole generation (forced tokens included): what a
            // caller of a constrained request sees, next to the free-running rate.
            let rate = out.generateSeconds > 0 ? Double(n) / out.generateSeconds : 0
            let ms = { (x: Double) in fmt(x * 1000) }
            print("[\(out.finishReason.rawValue) · \(n) tokens (\(stats.forcedTokens) forced) in \(stats.forwardPasses) forward passes"
                  + " · \(fmt(rate)) tok/s · prompt \(ms(out.promptSeconds)) ms · constraint \(ms(stats.constraintSeconds)) ms"
                  + " (mask \(ms(stats.maskSeconds)) ms, \(stats.rejections) rejections) · vocabulary built in \(ms(t1 - t0)) ms]")
            return
        }
        let result = try Generator.run(model: model, session: session, promptIDs: ids, options: opts, now: monotonicSeconds) { delta in
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
