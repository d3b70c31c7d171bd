/// Turns generated ids into text one token at a time, never emitting half a character.
///
/// A byte-level BPE token can end in the middle of a multi-byte UTF-8 character (emoji and
/// CJK are often split over two or three tokens). Decoding each token on its own would emit
/// U+FFFD garbage; this holds the incomplete tail back until the token that completes it
/// arrives, so the concatenation of everything returned equals `decode(allIDs)`.
public struct StreamingDetokenizer: Sendable {
    public let tokenizer: Tokenizer
    /// Whether control tokens (`<|im_end|>`, ...) appear in the text.
    public let renderSpecial: Bool
    /// Bytes not yet returned: at most an incomplete character (3 bytes) between calls.
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer, renderSpecial: Bool = true) {
        self.tokenizer = tokenizer
        self.renderSpecial = renderSpecial
        pending.reserveCapacity(64)
    }

    /// The text that `id` completes: possibly empty (mid-character), possibly more than the
    /// token's own bytes (it finished a character an earlier token started).
    public mutating func append(_ id: Int32) -> String {
        tokenizer.appendBytes(id, renderSpecial: renderSpecial, to: &pending)
        let cut = Self.completeLength(pending)
        guard cut > 0 else { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Whatever is still held back, with an unfinished character rendered as U+FFFD.
    /// Call when generation ends; the detokenizer is then empty and can be reused.
    public mutating func finish() -> String {
        defer { pending.removeAll(keepingCapacity: true) }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix of `b` that does not end inside a character that could
    /// still be completed. Invalid bytes are not held back: they can never become valid, and
    /// holding them would stall the stream.
    static func completeLength(_ b: [UInt8]) -> Int {
        let n = b.count
        // The start of the last character is within the last 4 bytes, if it is anywhere.
        var i = n - 1
        while i >= max(0, n - 4) && b[i] & 0xC0 == 0x80 { i -= 1 }
        guard i >= max(0, n - 4), i >= 0 else { return n }
        let lead = b[i]
        let need: Int
        switch lead {
        case 0xC2...0xDF: need = 2
        case 0xE0...0xEF: need = 3
        case 0xF0...0xF4: need = 4
        default: return n  // ASCII, or a byte that never starts a valid character
        }
        return n - i < need ? i : n
    }
}
