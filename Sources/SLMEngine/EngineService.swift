import SLMModel
import SLMTokenizer
import SLMConstraint

// The seam between the socket server and the engine. It lives here, beside `Engine`,
// because every type in it (requests, handles, events, job outcomes, errors, stats) is the
// engine's own: a module of its own would hold only this protocol and re-export the rest.

/// What a front end reads of the loaded model, without its weights: the tokenizer and chat
/// template it prepares requests with, and the facts `info` and `status` report.
public struct ModelFacts: Sendable {
    /// Text ↔ token ids: tokenize, detokenize, prompts, choose options.
    public let tokenizer: Tokenizer
    /// The template `chat` renders with, or why the model has none slmd renders.
    public let chatTemplate: Result<ChatTemplate, ChatTemplateError>
    /// `general.name`, or the file's name when it has none.
    public let name: String
    /// Where the model was loaded from (replies carry the file name only).
    public let filePath: String
    /// Token ids are `0 ..< vocabSize`.
    public let vocabSize: Int
    public let embeddingLength: Int
    public let layerCount: Int
    /// The context length the model was trained with.
    public let trainedContextLength: Int
    /// Bytes of the file's tensors.
    public let weightBytes: Int
    /// Architecture, parameters, tensor types, tokenizer and template names.
    public let summary: ModelSummary

    public init(tokenizer: Tokenizer, chatTemplate: Result<ChatTemplate, ChatTemplateError>, name: String,
                filePath: String, vocabSize: Int, embeddingLength: Int, layerCount: Int, trainedContextLength: Int,
                weightBytes: Int, summary: ModelSummary) {
        self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate
        self.name = name
        self.filePath = filePath
        self.vocabSize = vocabSize
        self.embeddingLength = embeddingLength
        self.layerCount = layerCount
        self.trainedContextLength = trainedContextLength
        self.weightBytes = weightBytes
        self.summary = summary
    }

    /// The facts of a loaded model.
    public init(_ model: Model) {
        self.init(tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, name: model.config.name,
                  filePath: model.file.path, vocabSize: model.config.vocabSize,
                  embeddingLength: model.config.embeddingLength, layerCount: model.config.layerCount,
                  trainedContextLength: model.config.trainedContextLength, weightBytes: model.weightBytes,
                  summary: model.summary)
    }
}

/// Exactly what the socket server needs from an engine: submit the four kinds of work,
/// build a parse prompt, cancel, read the counters, and the model's facts.
///
/// `Engine` is the implementation; the server's tests also drive request handling
/// in-process against fakes. Every call here is made once per request (a token's text
/// reaches the server through the `sink` or `completion` closure the request handed in,
/// never through this protocol), so calling through an existential costs nothing per token.
/// Each method means what `Engine`'s does, refusals included.
public protocol EngineService: AnyObject, Sendable {
    /// The loaded model's tokenizer, template and facts; read once, when the server starts.
    var modelFacts: ModelFacts { get }

    /// Queues a generation; its text and end arrive through `sink` (any thread).
    func submit(_ request: GenerationRequest, sink: @escaping @Sendable (EngineEvent) -> Void) throws(EngineError) -> RequestHandle

    /// Queues a `suggest`; its one outcome arrives through `completion`.
    func submitSuggest(prefix: String, options: SuggestOptions, owner: UInt32,
                       completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle

    /// Queues a `choose` over options already tokenized after the prompt.
    func submitChoose(promptIDs: [Int32], options: [[Int32]], texts: [String], normalize: Bool, deadline: Double?,
                      owner: UInt32, completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle

    /// Queues a schema-constrained generation (`parse`, or `complete`/`chat` with a schema).
    func submitParse(promptIDs: [Int32], schema: String, automaton: SchemaAutomaton, maxTokens: Int,
                     sampling: SamplingParams, deadline: Double?, confidence: Bool, departures: DepartureFilter?,
                     noNumbers: Bool, owner: UInt32,
                     completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle

    /// The prompt of a parse, as token ids (instruction, examples, utterance in the chat template).
    func parsePrompt(utterance: String, instruction: String?,
                     examples: [(utterance: String, output: String)]) throws(ParsePromptError) -> [Int32]

    /// Ends a queued or running request with `cancelled`; false when it had already finished.
    @discardableResult
    func cancel(_ handle: RequestHandle) -> Bool

    /// The engine's counters now.
    func stats() -> EngineStats
}

extension Engine: EngineService {
    public var modelFacts: ModelFacts { ModelFacts(model) }
}
