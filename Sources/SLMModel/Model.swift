import GGUF
import SLMKernels
import SLMTokenizer

/// A loaded model: the mapped file, its hyperparameters and weight views.
///
/// Loading maps and validates the file and binds every tensor by name; it reads no
/// weights (pages come in on first use, or up front with `prefetch`).
public final class Model: Sendable {
    public let file: GGUFFile
    public let config: ModelConfig
    public let weights: ModelWeights
    public let tokenizer: Tokenizer
    /// The chat template, or why the file's template is not one slmd can render.
    public let chatTemplate: Result<ChatTemplate, ChatTemplateError>

    /// Maps `path`; `weightsLayout` says whether the quantized matrices are used in place or
    /// copied into the kernels' preferred layout (see `WeightsLayout`), `repackCacheDirectory`
    /// where such a copy is kept as a file (see `ModelWeights.init`).
    public convenience init(path: String, weightsLayout: WeightsLayout = .mapped,
                            repackCacheDirectory: String? = nil, chatTemplate: ChatTemplate.Choice = .auto) throws(ModelError) {
        let file: GGUFFile
        do {
            file = try GGUFFile(path: path)
        } catch {
            throw ModelError("cannot load model \(path): \(error)")
        }
        try self.init(file: file, weightsLayout: weightsLayout, repackCacheDirectory: repackCacheDirectory,
                      chatTemplate: chatTemplate)
    }

    /// `chatTemplate` names the prompt format, or `auto` to recognise the file's
    /// `tokenizer.chat_template`. The format's end-of-turn token joins the tokenizer's
    /// end-of-generation set.
    public init(file: GGUFFile, weightsLayout: WeightsLayout = .mapped, repackCacheDirectory: String? = nil,
                chatTemplate choice: ChatTemplate.Choice = .auto) throws(ModelError) {
        self.file = file
        config = try ModelConfig(gguf: file)
        weights = try ModelWeights(file: file, config: config, layout: weightsLayout, cacheDirectory: repackCacheDirectory)
        let template = Result { () throws(ChatTemplateError) in try ChatTemplate(gguf: file, choice: choice) }
        do {
            tokenizer = try Tokenizer(gguf: file, endOfTurnTexts: (try? template.get())?.endOfTurnTexts ?? [])
        } catch {
            throw ModelError("\(file.path): \(error)")
        }
        guard tokenizer.vocabSize == config.vocabSize else {
            throw ModelError("\(file.path): tokenizer has \(tokenizer.vocabSize) tokens but token_embd has \(config.vocabSize) rows")
        }
        chatTemplate = template
    }

    /// Renders chat messages into prompt text with the model's template.
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true,
                           enableThinking: Bool = false) throws(ChatTemplateError) -> String {
        try chatTemplate.get().render(messages, addGenerationPrompt: addGenerationPrompt, enableThinking: enableThinking)
    }

    /// The prompt ids for a conversation, as llama.cpp builds them: the rendered template
    /// tokenized with special tokens parsed and the BOS the model asks for
    /// (`tokenizer.ggml.add_bos_token`; the templates leave BOS to the tokenizer).
    public func chatPromptIDs(_ messages: [ChatMessage], addGenerationPrompt: Bool = true,
                              enableThinking: Bool = false) throws(ChatTemplateError) -> [Int32] {
        let text = try renderChat(messages, addGenerationPrompt: addGenerationPrompt, enableThinking: enableThinking)
        var ids = tokenizer.encode(text, parseSpecial: true)
        if tokenizer.addBOS, let bos = tokenizer.bosID { ids.insert(bos, at: 0) }
        return ids
    }

    /// Bytes of weights in the mapping (what a decode step streams).
    public var weightBytes: Int { file.tensors.reduce(0) { $0 + $1.byteCount } }

    /// Brings every weight page into memory now, so the first request does not pay for it.
    /// With repacked weights only the tensors still read from the mapping are touched (the
    /// copies are resident already, and their mapped originals were dropped on purpose).
    public func prefetch() {
        guard weights.layout == .repacked else {
            file.adviseWillNeed()
            file.touchAllPages()
            return
        }
        weights.touchRepacked()
        for t in file.tensors where !weights.repackedSources.contains(Int(bitPattern: t.data)) {
            file.touchPages(t.data, byteCount: t.byteCount)
        }
    }
}
