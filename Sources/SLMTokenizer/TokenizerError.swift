/// A failure to build a `Tokenizer` from a model's metadata.
///
/// Errors name the metadata key involved and carry the offending value, so "this model
/// uses a tokenizer slmd does not implement" is distinguishable from "this file is broken".
public struct TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong. New kinds may be added; switch with a `default`.
    public enum Kind: String, Sendable, Equatable {
        /// `tokenizer.ggml.model` names a tokenizer family slmd does not implement
        /// (for example `llama`, SentencePiece).
        case unsupportedModel
        /// `tokenizer.ggml.pre` names a pre-tokenizer slmd does not implement.
        case unsupportedPreTokenizer
        /// A required key is absent or has the wrong type.
        case missingMetadata
        /// The vocabulary is internally inconsistent (lengths differ, ids out of range,
        /// a byte has no token, ...).
        case invalidVocabulary
    }

    public let kind: Kind
    /// The metadata key the problem was found in.
    public let key: String
    /// Human detail, including the offending value.
    public let detail: String

    public init(_ kind: Kind, key: String, _ detail: String) {
        self.kind = kind
        self.key = key
        self.detail = detail
    }

    public var description: String {
        "tokenizer \(kind.rawValue) error in metadata '\(key)': \(detail)"
    }
}
