/// A failure to open, map or parse a GGUF file.
///
/// Every error names what was being read (`field`: a metadata key, a tensor name, or a
/// header field) and the byte offset in the file where reading it failed, so a corrupt
/// model file can be diagnosed without a hex editor.
public struct GGUFError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong. New kinds may be added; switch with a `default`.
    public enum Kind: String, Sendable, Equatable {
        /// The file could not be opened, stat'ed or mapped.
        case io
        /// A read would run past the end of the file.
        case truncated
        /// The first four bytes are not `GGUF`.
        case badMagic
        /// A header version this reader does not understand (it reads v2 and v3).
        case unsupportedVersion
        /// A metadata value type id that does not exist.
        case badValueType
        /// A string that is not valid UTF-8.
        case badString
        /// A count, size or product that overflows or exceeds what the file can hold.
        case tooLarge
        /// A value that is syntactically fine but not allowed (alignment 0, 5 dimensions, ...).
        case invalidValue
        /// A tensor type id this reader has no block layout for.
        case unknownTensorType
        /// A tensor's data lies outside the data section, overlaps another, or is misaligned.
        case badTensorData
        /// The same key or tensor name appears twice.
        case duplicate
        /// A key or tensor asked for by the caller is absent or has another type.
        case missing
    }

    public let kind: Kind
    /// The header field, metadata key or tensor the reader was working on.
    public let field: String
    /// Byte offset in the file where the problem was found (-1 when not applicable).
    public let offset: Int
    /// Human detail: expected vs actual values.
    public let detail: String

    public init(_ kind: Kind, field: String, offset: Int, _ detail: String) {
        self.kind = kind
        self.field = field
        self.offset = offset
        self.detail = detail
    }

    public var description: String {
        let at = offset >= 0 ? " at byte \(offset)" : ""
        return "GGUF \(kind.rawValue) error in \(field)\(at): \(detail)"
    }
}
