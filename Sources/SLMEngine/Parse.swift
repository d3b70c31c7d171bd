import SLMKernels
import SLMModel
import SLMTokenizer
import SLMConstraint
#if canImport(Glibc)
import Glibc
#endif
import SLMLimits

// Schema-constrained generation (`parse`, and `complete`/`chat` with a schema): its result,
// validation and runner.

/// The output of a schema-constrained generation.
public struct ParseResult: Sendable, Equatable {
    /// Compact JSON text, valid under the schema when `complete`.
    public var text: String
    /// The root value was closed (false when max_tokens cut it short or it was interrupted).
    public var complete: Bool
    /// Why the job stopped before the root value closed, when it was cancelled, superseded
    /// or ran past its deadline mid-generation; nil otherwise. An interrupted parse is not a
    /// result: the server answers it with an error, never with the partial text.
    public var interrupted: FinishReason? = nil
    public var promptTokens: Int
    public var generatedTokens: Int
    /// Tokens the schema forced (appended without sampling).
    public var forcedTokens: Int
    public var forwardPasses: Int
    public var maskMs: Double
    public var ms: Double
    /// Per top-level field, how sure the model was of its value (see `FieldConfidence`).
    public var confidence: [FieldScore] = []
    /// The generated token ids (forced ones included).
    public var tokens: [Int32] = []
    /// Every sampled token's scores and every departure, for `ParseVerdict` (empty when the
    /// request did not ask for confidences).
    public var sampled: [SampledToken] = []
    public var departures: [Departure] = []
}

/// Why a parse prompt could not be built.
public enum ParsePromptError: Error, Sendable, Equatable {
    /// The model has no chat template slmd can render.
    case noChatTemplate
    /// The utterance holds text that would tokenize as a control token.
    case controlTextInUtterance
    /// An example or the instruction holds text that would tokenize as a control token.
    case controlTextInExamplesOrInstruction
}

extension Engine {
    /// The system message of a parse when neither the request nor the intent gives one.
    public static let defaultParseInstruction = "Convert the user's command into a JSON object. Reply with the JSON object only."

    /// The prompt of a parse, as token ids: the instruction as the system message, each
    /// worked example as an earlier user/assistant exchange (its output in the schema's key
    /// order, the layout decoding will produce), then the utterance, in the model's chat
    /// template. A 135M model follows demonstrated format far better than described format.
    /// Text that would tokenize as a control token is refused, naming the member.
    public func parsePrompt(utterance: String, instruction: String?,
                            examples: [(utterance: String, output: String)]) throws(ParsePromptError) -> [Int32] {
        guard case .success(let template) = model.chatTemplate else { throw .noChatTemplate }
        var messages = [ChatMessage(role: "system", content: instruction ?? Self.defaultParseInstruction)]
        for e in examples {
            messages.append(ChatMessage(role: "user", content: e.utterance))
            messages.append(ChatMessage(role: "assistant", content: e.output))
        }
        messages.append(ChatMessage(role: "user", content: utterance))
        let tokenizer = model.tokenizer
        for (i, m) in messages.enumerated() where tokenizer.encode(m.content, parseSpecial: true).contains(where: tokenizer.isControl) {
            throw i == messages.count - 1 ? .controlTextInUtterance : .controlTextInExamplesOrInstruction
        }
        var ids = tokenizer.encode(template.render(messages), parseSpecial: true)
        // The templates leave BOS to the tokenizer (Llama 2/3, TinyLlama ask for it).
        if tokenizer.addBOS, let bos = tokenizer.bosID { ids.insert(bos, at: 0) }
        return ids
    }

    /// Queues a schema-constrained generation: the output is JSON valid under `schema`
    /// (compiled by the caller with `JSONSchemaCompiler`), ending right after the root value.
    /// `confidence` scores every choice, `departures` (with it) finds what the model wanted
    /// where the schema refused it in those fields, `noNumbers` (the input states no number)
    /// keeps numbers out of values that may be null (see `ConstrainedGenerator`).
    public func submitParse(promptIDs: [Int32], schema: String, automaton: SchemaAutomaton, maxTokens: Int,
                            sampling: SamplingParams, deadline: Double? = nil, confidence: Bool = true,
                            departures: DepartureFilter? = nil, noNumbers: Bool = false, owner: UInt32 = 0,
                            completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        guard !promptIDs.isEmpty else { throw EngineError(.badRequest, "the prompt is empty") }
        guard maxTokens >= 1, maxTokens <= config.maxTokens else {
            throw EngineError(.badRequest, "max_tokens \(maxTokens) is outside 1...\(config.maxTokens)")
        }
        if let bad = sampling.invalidField { throw EngineError(.badRequest, bad) }
        guard promptIDs.count + maxTokens <= config.maxContext else {
            throw EngineError(.contextOverflow, "prompt (\(promptIDs.count) tokens) + max_tokens exceed the context of \(config.maxContext)")
        }
        let need = kvBytes(tokens: promptIDs.count + maxTokens)
        guard need <= kvBudget else {
            throw EngineError(.overMemoryBudget, "parse needs \(need) bytes of KV; the budget leaves \(kvBudget)")
        }
        return try enqueue(.parse(promptIDs: promptIDs, schema: schema, automaton: automaton, maxTokens: maxTokens, sampling: sampling,
                                  confidence: confidence, departures: departures, noNumbers: noNumbers),
                           deadline: deadline, session: nil, owner: owner, completion: completion)
    }

    func runParse(_ job: Job, prompt: [Int32], schema: String, automaton: SchemaAutomaton,
                          maxTokens: Int, sampling: SamplingParams, confidence: Bool, departures: DepartureFilter?, noNumbers: Bool) {
        let t0 = monotonicSeconds()
        // The instruction and examples are the same for every command of an intent: their KV
        // comes from the prefix cache, so only the utterance is computed.
        guard let (cache, reused) = acquireCache(for: prompt, capacity: prompt.count + maxTokens, owner: job.handle.owner) else {
            return job.fail(.error, "not enough memory for this request now; try again")
        }
        let session = Session(runner: runner, cache: cache, tokens: Array(prompt.prefix(reused)))
        defer { retire(cache, tokens: session.tokens, owner: job.handle.owner) }
        let vocabulary = constraintVocabulary()
        let compiled = compiledSchema(schema, automaton)
        let decoder = ConstrainedDecoder(automaton: compiled.automaton, vocabulary: vocabulary, sharedCache: compiled.masks)
        do {
            let (out, stats) = try ConstrainedGenerator.run(
                model: model, session: session, promptIDs: Array(prompt[reused...]), decoder: decoder,
                options: GenerationOptions(maxTokens: maxTokens, sampling: sampling), scoreTokens: confidence,
                departures: departures, noNumbers: noNumbers, interrupt: { interruption(job) }, now: monotonicSeconds)
            let interrupted: FinishReason? = [.cancelled, .superseded, .deadline].contains(out.finishReason) ? out.finishReason : nil
            job.completion(.parse(ParseResult(text: decoder.generatedText, complete: decoder.isComplete && out.finishReason == .stop,
                                              interrupted: interrupted,
                                              promptTokens: prompt.count, generatedTokens: out.generatedIDs.count,
                                              forcedTokens: stats.forcedTokens, forwardPasses: stats.forwardPasses,
                                              maskMs: stats.maskSeconds * 1000, ms: (monotonicSeconds() - t0) * 1000,
                                              confidence: FieldConfidence.compute(text: decoder.generatedBytes, sampled: stats.sampled),
                                              tokens: out.generatedIDs, sampled: stats.sampled, departures: stats.departures)))
        } catch {
            job.fail(.error, "\(error)")
        }
    }
}
