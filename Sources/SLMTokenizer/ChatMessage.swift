/// One turn of a conversation, as the chat template sees it.
public struct ChatMessage: Sendable, Codable, Equatable {
    /// `system`, `user` or `assistant` (passed through verbatim; templates decide what is valid).
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}
