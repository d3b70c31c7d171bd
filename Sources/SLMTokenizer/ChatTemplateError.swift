/// A failure to recognise a model's chat template.
public struct ChatTemplateError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong. New kinds may be added; switch with a `default`.
    public enum Kind: String, Sendable, Equatable {
        /// The model has no `tokenizer.chat_template`.
        case missing
        /// The template is not one llama.cpp's detection recognises (see `ChatTemplate`).
        case unrecognized
        /// The template is recognised as a format slmd does not render (the detail names it).
        case unsupported
    }

    public let kind: Kind
    /// Human detail: for an unrecognised template, its opening text.
    public let detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { "chat template \(kind.rawValue): \(detail)" }
}
