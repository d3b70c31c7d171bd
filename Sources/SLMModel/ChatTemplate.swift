import GGUF

/// Renders a conversation into the prompt text a model was trained on.
///
/// slmd does not run Jinja. It recognises the template's *format* from its text and renders
/// that format natively, reproducing the Jinja output byte for byte. Recognised formats:
///
/// - **ChatML** (any template containing `<|im_start|>`, e.g. SmolLM2, Qwen2):
///   `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`
///   as the generation prompt. If the template text writes a literal system turn
///   (`<|im_start|>system\n...<|im_end|>`), that text is the default system message, inserted
///   when the first message is not a system message (as SmolLM2's template does).
///
/// Any other template is refused with `ChatTemplateError.unrecognized` rather than rendered
/// approximately: a wrong prompt format degrades a small model silently.
public struct ChatTemplate: Sendable, Equatable {
    /// The prompt formats slmd can render.
    public enum Format: String, Sendable, Equatable {
        case chatML
    }

    public let format: Format
    /// Inserted as the first turn when the conversation does not start with a system message.
    public let defaultSystemMessage: String?

    public init(format: Format, defaultSystemMessage: String? = nil) {
        self.format = format
        self.defaultSystemMessage = defaultSystemMessage
    }

    /// Recognises `tokenizer.chat_template` in `gguf`.
    public init(gguf: GGUFFile) throws(ChatTemplateError) {
        guard let text = gguf["tokenizer.chat_template"]?.stringValue else {
            throw ChatTemplateError(.missing, "the model has no tokenizer.chat_template metadata")
        }
        try self.init(templateText: text)
    }

    /// Recognises a Jinja chat template from its text.
    public init(templateText text: String) throws(ChatTemplateError) {
        if text.contains("<|im_start|>") {
            self.init(format: .chatML, defaultSystemMessage: Self.chatMLDefaultSystem(in: text))
            return
        }
        let head = String(text.prefix(120))
        throw ChatTemplateError(.unrecognized, "not a ChatML template (no <|im_start|>); begins \(head.debugDescription)")
    }

    /// The literal system turn written in a ChatML template, if any. Inside a Jinja string
    /// literal a newline may be written raw or as the escape `\n`; both are accepted.
    static func chatMLDefaultSystem(in text: String) -> String? {
        guard let open = text.firstRange(of: "<|im_start|>system") else { return nil }
        var rest = text[open.upperBound...]
        if rest.hasPrefix("\n") {
            rest = rest.dropFirst()
        } else if rest.hasPrefix("\\n") {
            rest = rest.dropFirst(2)
        } else {
            return nil  // `<|im_start|>system` followed by a Jinja expression, not literal text
        }
        guard let close = rest.firstRange(of: "<|im_end|>") else { return nil }
        let body = rest[..<close.lowerBound]
        // A body that leaves the string literal (quotes, Jinja tags) is computed, not a default.
        if body.contains("'") || body.contains("\"") || body.contains("{{") || body.contains("{%") { return nil }
        return String(body.replacing("\\n", with: "\n"))
    }

    /// The prompt for `messages`; with `addGenerationPrompt`, ends with the opening of an
    /// assistant turn so the model's next tokens are its reply.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        switch format {
        case .chatML:
            var out = ""
            if let system = defaultSystemMessage, let first = messages.first, first.role != "system" {
                out += "<|im_start|>system\n" + system + "<|im_end|>\n"
            }
            for m in messages {
                out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n"
            }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
            return out
        }
    }
}
