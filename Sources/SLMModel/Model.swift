import GGUF
import SLMKernels
import SLMTokenizer

/// What a loaded model is, as `info` and `status` report it.
public struct ModelSummary: Sendable, Equatable {
    public let architecture: Architecture
    /// Elements of every tensor in the file (tied output counted once, as the file holds it).
    public let parameterCount: Int
    /// Tensors per ggml type name ("Q4_1": 210, "F32": 61, ...).
    public let tensorTypeCounts: [String: Int]
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    public let tokenizer: String
    /// The pre-tokenizer slmd runs for `tokenizer.ggml.pre` ("smollm", "qwen2", "llama3",
    /// ...; `PreTokenizer`), nil for SentencePiece.
    public let preTokenizer: String?
    /// The chat template's name (`ChatTemplate.name`), nil when the file's is not one slmd renders.
    public let chatTemplate: String?
}

extension ModelSummary: CustomStringConvertible {
    /// One line for logs and `slmd serve --check-config`: "llama, 134515008 parameters,
    /// tensors 210 Q4_1 + 61 F32 + 1 Q8_0, tokenizer gpt2 (smollm), chat template chatml".
    public var description: String {
        let tensors = tensorTypeCounts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
            .map { "\($0.value) \($0.key)" }.joined(separator: " + ")
        return "\(architecture), \(parameterCount) parameters, tensors \(tensors), tokenizer \(tokenizer)"
            + (preTokenizer.map { " (\($0))" } ?? "") + ", chat template \(chatTemplate ?? "none")"
    }
}

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
        summary = Self.summarize(file: file, config: config, tokenizer: tokenizer, chatTemplate: template)
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

    /// What the model is, for `info`/`status` and logs: one definition for every layer,
    /// computed once at load (status requests read it on the I/O thread).
    public let summary: ModelSummary

    private static func summarize(file: GGUFFile, config: ModelConfig, tokenizer: Tokenizer,
                                  chatTemplate: Result<ChatTemplate, ChatTemplateError>) -> ModelSummary {
        var counts: [String: Int] = [:]
        var parameters = 0
        for t in file.tensors {
            counts[t.type.name, default: 0] += 1
            // Saturating: the dims come from the file (the parser bounds each tensor by the
            // file size, but a report must never trap).
            var n = 1
            for d in t.dims {
                let (p, overflow) = n.multipliedReportingOverflow(by: d)
                n = overflow ? Int.max : p
            }
            let (sum, overflow) = parameters.addingReportingOverflow(n)
            parameters = overflow ? Int.max : sum
        }
        return ModelSummary(architecture: config.architecture, parameterCount: parameters, tensorTypeCounts: counts,
                            tokenizer: tokenizer.model.rawValue, preTokenizer: tokenizer.preTokenizer?.rawValue,
                            chatTemplate: (try? chatTemplate.get())?.name)
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
