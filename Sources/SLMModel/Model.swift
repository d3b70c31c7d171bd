import GGUF
import SLMKernels

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
                            repackCacheDirectory: String? = nil) throws(ModelError) {
        let file: GGUFFile
        do {
            file = try GGUFFile(path: path)
        } catch {
            throw ModelError("cannot load model \(path): \(error)")
        }
        try self.init(file: file, weightsLayout: weightsLayout, repackCacheDirectory: repackCacheDirectory)
    }

    public init(file: GGUFFile, weightsLayout: WeightsLayout = .mapped, repackCacheDirectory: String? = nil) throws(ModelError) {
        self.file = file
        config = try ModelConfig(gguf: file)
        weights = try ModelWeights(file: file, config: config, layout: weightsLayout, cacheDirectory: repackCacheDirectory)
        do {
            tokenizer = try Tokenizer(gguf: file)
        } catch {
            throw ModelError("\(file.path): \(error)")
        }
        guard tokenizer.vocabSize == config.vocabSize else {
            throw ModelError("\(file.path): tokenizer has \(tokenizer.vocabSize) tokens but token_embd has \(config.vocabSize) rows")
        }
        chatTemplate = Result { () throws(ChatTemplateError) in try ChatTemplate(gguf: file) }
    }

    /// Renders chat messages into prompt text with the model's template.
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) throws(ChatTemplateError) -> String {
        try chatTemplate.get().render(messages, addGenerationPrompt: addGenerationPrompt)
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
