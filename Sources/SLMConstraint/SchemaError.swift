/// Why a JSON Schema cannot be compiled for constrained decoding. `path` is a JSON Pointer
/// into the schema (`#/properties/room/pattern`), naming the offending keyword or value.
public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The schema text is not JSON.
        case invalidJSON
        /// A keyword slmd does not implement (`$ref`, `pattern`, `oneOf`, `format`, ...).
        /// Refused rather than ignored: ignoring it would let invalid output through.
        case unsupportedKeyword
        /// A supported keyword with a value of the wrong shape (`maxLength: -1`, `type: "date"`).
        case invalidValue
        /// The schema admits no value at all (`minimum` above `maximum`, an empty `enum`,
        /// a required property that is not declared).
        case emptyLanguage
        /// Beyond the compiler's fixed bounds (properties per object, nesting, enum size).
        case tooLarge
    }

    public let code: Code
    public let path: String
    public let message: String

    public init(_ code: Code, path: String, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { "schema \(path): \(message)" }
}
