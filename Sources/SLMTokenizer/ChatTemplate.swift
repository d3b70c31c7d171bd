import GGUF

/// Renders a conversation into the prompt text a model was trained on.
///
/// slmd does not run Jinja. It recognises the template's *format* from its text the way
/// llama.cpp's `llm_chat_detect_template` does (`LlamaCppChatTemplate`) and renders that
/// format natively, byte for byte as llama.cpp's `llm_chat_apply_template`:
///
/// - **ChatML** (`<|im_start|>`, e.g. SmolLM2, Qwen2.5): `<|im_start|>{role}\n{content}<|im_end|>\n`
///   per message, then `<|im_start|>assistant\n`. One addition to llama.cpp's rendering: if
///   the template text writes a literal default system turn
///   (`<|im_start|>system\n...<|im_end|>`, as SmolLM2's and Qwen2.5's do), it is inserted
///   when the first message is not a system message, as the Jinja template does.
/// - **Qwen3** (ChatML with an `enable_thinking` switch): the Qwen3 Jinja template's
///   rendering without tools (llama.cpp's legacy path has no Qwen3 format): earlier
///   assistant turns lose their `<think>` block, and with thinking off (the default) the
///   generation prompt ends with an empty `<think>\n\n</think>\n\n`.
/// - **Llama 3** (`<|start_header_id|>`): `<|start_header_id|>{role}<|end_header_id|>\n\n{trimmed
///   content}<|eot_id|>`, then the assistant header. BOS is the tokenizer's to add.
/// - **Zephyr** (`<|user|>` with `<|endoftext|>`; TinyLlama's and Zephyr's own templates,
///   which end turns with `eos_token`, are recognised too — llama.cpp's detection takes them
///   for GLM-Edge): `<|{role}|>\n{content}{end of turn}\n`, then `<|assistant|>\n`.
/// - **Llama 2** (`[INST]`, with llama.cpp's four variants: system prompt support, BOS
///   inside the history, stripped content).
///
/// Any other template is refused with a `ChatTemplateError` naming what llama.cpp would
/// call it, rather than rendered approximately: a wrong prompt format degrades a small
/// model silently. `Choice` names a format instead (the `chat_template` setting).
public struct ChatTemplate: Sendable, Equatable {
    /// The prompt formats slmd can render.
    public enum Format: String, Sendable, Equatable, CaseIterable {
        case chatML = "chatml"
        case qwen3
        case llama3
        case zephyr
        case llama2
    }

    /// llama.cpp's Llama 2 variants.
    public enum Llama2Variant: String, Sendable, Equatable {
        /// `llama2`: no system prompt support (a system message is written as `{content}\n`).
        case plain = "llama2"
        /// `llama2-sys`: `<<SYS>>\n{content}\n<</SYS>>\n\n`.
        case system = "llama2-sys"
        /// `llama2-sys-bos`: also `<s>` before each later `[INST]`.
        case systemBOS = "llama2-sys-bos"
        /// `llama2-sys-strip`: also contents trimmed of surrounding whitespace.
        case systemStrip = "llama2-sys-strip"
    }

    /// What a configuration may ask for: `auto` (recognise the model's template) or a format
    /// by name, used whatever the model's template says.
    public enum Choice: String, Sendable, Equatable, CaseIterable {
        case auto, chatml, qwen3, llama3, zephyr, llama2
        case llama2System = "llama2-sys", llama2SystemBOS = "llama2-sys-bos", llama2SystemStrip = "llama2-sys-strip"
    }

    public let format: Format
    /// ChatML only: inserted as the first turn when the conversation does not start with a
    /// system message.
    public let defaultSystemMessage: String?
    /// Llama 2 only.
    public let llama2Variant: Llama2Variant
    /// The text that closes a turn: `<|im_end|>`, `<|eot_id|>`, `</s>`, or for Zephyr
    /// `<|endoftext|>` or the model's EOS text. Its token ends generation.
    public let endOfTurn: String

    public init(format: Format, defaultSystemMessage: String? = nil, llama2Variant: Llama2Variant = .system,
                endOfTurn: String? = nil) {
        self.format = format
        self.defaultSystemMessage = format == .chatML ? defaultSystemMessage : nil
        self.llama2Variant = llama2Variant
        switch format {
        case .chatML, .qwen3: self.endOfTurn = "<|im_end|>"
        case .llama3: self.endOfTurn = "<|eot_id|>"
        case .llama2: self.endOfTurn = "</s>"
        case .zephyr: self.endOfTurn = endOfTurn ?? "<|endoftext|>"
        }
    }

    /// The name llama.cpp gives this format (`--chat-template NAME`); `qwen3` is slmd's own.
    public var name: String { format == .llama2 ? llama2Variant.rawValue : format.rawValue }

    /// Token texts that end generation because this format closes turns with them.
    public var endOfTurnTexts: [String] { [endOfTurn] }

    /// The format `choice` names, or (for `auto`) the one recognised in
    /// `tokenizer.chat_template`. The model's EOS text is read for Zephyr-style templates
    /// that close turns with `eos_token`.
    public init(gguf: GGUFFile, choice: Choice = .auto) throws(ChatTemplateError) {
        let text = gguf["tokenizer.chat_template"]?.stringValue
        let eosText = Self.eosText(gguf)
        if choice != .auto {
            self.init(choice: choice, eosText: eosText)
            return
        }
        guard let text else {
            throw ChatTemplateError(.missing, "the model has no tokenizer.chat_template metadata; "
                                        + "name a format with chat_template = \(Self.formatList)")
        }
        try self.init(templateText: text, eosText: eosText)
    }

    /// A format by name, as llama.cpp's `--chat-template NAME`: no default system message,
    /// and Zephyr closes turns with `<|endoftext|>`.
    public init(choice: Choice, eosText: String? = nil) {
        switch choice {
        case .auto, .chatml: self.init(format: .chatML)
        case .qwen3: self.init(format: .qwen3)
        case .llama3: self.init(format: .llama3)
        case .zephyr: self.init(format: .zephyr)
        case .llama2: self.init(format: .llama2, llama2Variant: .plain)
        case .llama2System: self.init(format: .llama2, llama2Variant: .system)
        case .llama2SystemBOS: self.init(format: .llama2, llama2Variant: .systemBOS)
        case .llama2SystemStrip: self.init(format: .llama2, llama2Variant: .systemStrip)
        }
    }

    /// Recognises a Jinja chat template from its text. `eosText` is the model's EOS token
    /// text, what `eos_token` renders as.
    public init(templateText text: String, eosText: String? = nil) throws(ChatTemplateError) {
        let hint = "; name a format with chat_template = \(Self.formatList)"
        guard let name = LlamaCppChatTemplate.detect(text) else {
            let head = String(text.prefix(120))
            throw ChatTemplateError(.unrecognized, "not a template format slmd (or llama.cpp) recognises; begins \(head.debugDescription)\(hint)")
        }
        func has(_ s: String) -> Bool { text.utf8.firstRange(of: s.utf8) != nil }
        switch name {
        case "chatml":
            if has("enable_thinking") {
                self.init(format: .qwen3)
            } else {
                self.init(format: .chatML, defaultSystemMessage: Self.chatMLDefaultSystem(in: text))
            }
        case "llama2": self.init(format: .llama2, llama2Variant: .plain)
        case "llama2-sys": self.init(format: .llama2, llama2Variant: .system)
        case "llama2-sys-bos": self.init(format: .llama2, llama2Variant: .systemBOS)
        case "llama2-sys-strip": self.init(format: .llama2, llama2Variant: .systemStrip)
        case "llama3": self.init(format: .llama3)
        case "zephyr": self.init(format: .zephyr, endOfTurn: "<|endoftext|>")
        case "glmedge" where has("eos_token") && has("<|user|>") && has("<|assistant|>") && has("<|system|>"):
            // Zephyr's and TinyLlama's own template: `'<|user|>\n' + content + eos_token`.
            guard let eosText, !eosText.isEmpty else {
                throw ChatTemplateError(.unsupported, "a Zephyr-style template ending turns with eos_token, but the model has no EOS token text\(hint)")
            }
            self.init(format: .zephyr, endOfTurn: eosText)
        default:
            throw ChatTemplateError(.unsupported, "recognised as llama.cpp's '\(name)' template, which slmd does not render\(hint)")
        }
    }

    static let formatList = Choice.allCases.map(\.rawValue).joined(separator: " | ")

    /// The EOS token's text from the metadata (SentencePiece's default id 2 when absent).
    static func eosText(_ gguf: GGUFFile) -> String? {
        guard let tokens = gguf["tokenizer.ggml.tokens"]?.arrayValue else { return nil }
        let id = gguf["tokenizer.ggml.eos_token_id"]?.intValue
            ?? (gguf["tokenizer.ggml.model"]?.stringValue == "llama" ? 2 : nil)
        guard let id, tokens.indices.contains(id) else { return nil }
        return tokens[id].stringValue
    }

    /// The first literal system turn written in a ChatML template, if any. Inside a Jinja
    /// string literal a newline may be written raw or as the escape `\n`; both are accepted.
    static func chatMLDefaultSystem(in text: String) -> String? {
        var searchFrom = text.startIndex
        while let open = text[searchFrom...].firstRange(of: "<|im_start|>system") {
            searchFrom = open.upperBound
            var rest = text[open.upperBound...]
            if rest.hasPrefix("\n") {
                rest = rest.dropFirst()
            } else if rest.hasPrefix("\\n") {
                rest = rest.dropFirst(2)
            } else {
                continue  // `<|im_start|>system` followed by a Jinja expression, not literal text
            }
            guard let close = rest.firstRange(of: "<|im_end|>") else { return nil }
            let body = rest[..<close.lowerBound]
            // A body that leaves the string literal (quotes, Jinja tags) is computed, not a default.
            if body.contains("'") || body.contains("\"") || body.contains("{{") || body.contains("{%") { continue }
            return String(body.replacing("\\n", with: "\n"))
        }
        return nil
    }

    /// The prompt for `messages`; with `addGenerationPrompt`, ends with the opening of an
    /// assistant turn so the model's next tokens are its reply. `enableThinking` is Qwen3's
    /// switch (off: the reply starts after an empty think block); other formats ignore it.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true, enableThinking: Bool = false) -> String {
        var out = ""
        switch format {
        case .chatML:
            if let system = defaultSystemMessage, let first = messages.first, first.role != "system" {
                out += "<|im_start|>system\n" + system + "<|im_end|>\n"
            }
            for m in messages {
                out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n"
            }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        case .qwen3:
            out = Self.renderQwen3(messages, addGenerationPrompt: addGenerationPrompt, enableThinking: enableThinking)
        case .llama3:
            for m in messages {
                out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + Self.trim(m.content) + "<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .zephyr:
            for m in messages {
                out += "<|" + m.role + "|>\n" + m.content + endOfTurn + "\n"
            }
            if addGenerationPrompt { out += "<|assistant|>\n" }
        case .llama2:
            // llama.cpp's rendering; the prompt always ends ready for the reply.
            let supportsSystem = llama2Variant != .plain
            var insideTurn = true
            out += "[INST] "
            for m in messages {
                let content = llama2Variant == .systemStrip ? Self.trim(m.content) : m.content
                if !insideTurn {
                    insideTurn = true
                    out += llama2Variant == .systemBOS ? "<s>[INST] " : "[INST] "
                }
                if m.role == "system" {
                    out += supportsSystem ? "<<SYS>>\n" + content + "\n<</SYS>>\n\n" : content + "\n"
                } else if m.role == "user" {
                    out += content + " [/INST]"
                } else {
                    out += content + "</s>"
                    insideTurn = false
                }
            }
        }
        return out
    }

    /// Qwen3's Jinja template (models/templates/Qwen-Qwen3-0.6B.jinja in llama.cpp), without
    /// tools: an explicit first system message, then each turn; assistant turns after the
    /// last user query keep (or get) a think block, earlier ones lose it. String operations
    /// are on UTF-8 bytes, which for these ASCII markers is Python's code-point semantics.
    static func renderQwen3(_ messages: [ChatMessage], addGenerationPrompt: Bool, enableThinking: Bool) -> String {
        var out: [UInt8] = []
        func put(_ s: String) { out.append(contentsOf: s.utf8) }
        if let first = messages.first, first.role == "system" {
            put("<|im_start|>system\n" + first.content + "<|im_end|>\n")
        }
        var lastQuery = messages.count - 1
        for (i, m) in messages.enumerated().reversed() where m.role == "user" {
            let c = Array(m.content.utf8)
            if !(c.starts(with: "<tool_response>".utf8) && c.reversed().starts(with: "</tool_response>".utf8.reversed())) {
                lastQuery = i
                break
            }
        }
        let open = Array("<think>".utf8), close = Array("</think>".utf8), newline = UInt8(ascii: "\n")
        for (i, m) in messages.enumerated() {
            if m.role == "user" || (m.role == "system" && i != 0) {
                put("<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n")
            } else if m.role == "assistant" {
                var content = Array(m.content.utf8)[...]
                var reasoning: ArraySlice<UInt8> = []
                if let first = content.firstRange(of: close) {
                    // content.split('</think>')[-1].lstrip('\n')
                    let last = content.ranges(of: close).last ?? first
                    var before = content[..<first.lowerBound]
                    let after = content[last.upperBound...]
                    // .split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
                    while before.last == newline { before = before.dropLast() }
                    if let o = before.ranges(of: open).last { before = before[o.upperBound...] }
                    reasoning = before.drop(while: { $0 == newline })
                    content = after.drop(while: { $0 == newline })
                }
                put("<|im_start|>assistant\n")
                if i > lastQuery && (i == messages.count - 1 || !reasoning.isEmpty) {
                    // '<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n')
                    while reasoning.last == newline { reasoning = reasoning.dropLast() }
                    put("<think>\n")
                    out.append(contentsOf: reasoning)
                    put("\n</think>\n\n")
                    content = content.drop(while: { $0 == newline })
                }
                out.append(contentsOf: content)
                put("<|im_end|>\n")
            } else if m.role == "tool" {
                if i == 0 || messages[i - 1].role != "tool" { put("<|im_start|>user") }
                put("\n<tool_response>\n" + m.content + "\n</tool_response>")
                if i == messages.count - 1 || messages[i + 1].role != "tool" { put("<|im_end|>\n") }
            }
        }
        if addGenerationPrompt {
            put("<|im_start|>assistant\n")
            if !enableThinking { put("<think>\n\n</think>\n\n") }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// llama.cpp's `trim`: C `isspace` bytes off both ends.
    static func trim(_ s: String) -> String {
        let u = Array(s.utf8)
        var lo = 0, hi = u.count
        while lo < hi && SpecialTokens.isCSpace(u[lo]) { lo += 1 }
        while hi > lo && SpecialTokens.isCSpace(u[hi - 1]) { hi -= 1 }
        return lo == 0 && hi == u.count ? s : String(decoding: u[lo..<hi], as: UTF8.self)
    }
}
