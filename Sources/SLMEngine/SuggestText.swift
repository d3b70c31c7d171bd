import SLMKernels
import SLMModel
#if canImport(Glibc)
import Glibc
#endif

// What `suggest` reads of the typed text and of each token: word and sentence bytes, when
// two suggestions are the same, per-token traits, token healing (the context the model
// reads and the bytes the first suggested token must start with) and the first tokens
// that agree with them. The search over the token tree is SuggestSearch.swift.

/// Whether a byte belongs to a word for word mode: letters, digits, an apostrophe (don't,
/// mother's) and any non-ASCII byte (letters of other scripts).
@inline(__always) func isWordByte(_ b: UInt8) -> Bool {
    let lower = b | 0x20
    return (b >= 0x30 && b <= 0x39) || (lower >= 0x61 && lower <= 0x7A) || b >= 0x80 || b == 0x27
}

/// Whether text ending with these bytes ends a sentence: `.`, `!` or `?`, possibly followed
/// by closing quotes or brackets (`."` ends one as well as `.`).
func isSentenceEnd(_ bytes: ArraySlice<UInt8>) -> Bool {
    var end = bytes.endIndex
    while end > bytes.startIndex {
        let b = bytes[end - 1]
        if b == 0x22 || b == 0x27 || b == 0x29 || b == 0x5D {
            end -= 1
        } else if b == 0x9D || b == 0x99, end - bytes.startIndex >= 3, bytes[end - 3] == 0xE2, bytes[end - 2] == 0x80 {
            end -= 3  // ” or ’
        } else {
            return b == 0x2E || b == 0x21 || b == 0x3F
        }
    }
    return false
}

/// What makes two suggestions the same one for the user: the text without surrounding
/// whitespace and trailing punctuation (`morning.` and `morning."` are one suggestion, the
/// more probable shown); a text of punctuation only is its first character.
func suggestionKey(_ text: String) -> String {
    let trimmed = text.trimmingWhitespace()
    var s = Substring(trimmed)
    while let last = s.last, last.isPunctuation || last.isWhitespace { s = s.dropLast() }
    if s.isEmpty, let first = trimmed.first { return String(first) }
    return String(s)
}

/// What the search checks for every child it looks at, precomputed per token.
struct TokenTraits: Sendable {
    private let flags: UInt8
    /// Runs of non-space bytes in the token: the words it starts (one fewer when it
    /// continues the word before it).
    let runs: UInt8

    private static let startsWithSpaceBit: UInt8 = 1, newlineBit: UInt8 = 2, specialBit: UInt8 = 4
    private static let continuesWordBit: UInt8 = 8, endsSentenceBit: UInt8 = 16, endsWithSpaceBit: UInt8 = 32

    init(_ bytes: [UInt8], special: Bool) {
        var f: UInt8 = 0
        if let b = bytes.first, isSpace(b) { f |= Self.startsWithSpaceBit }
        if bytes.contains(0x0A) { f |= Self.newlineBit }
        if special { f |= Self.specialBit }
        if !special, let b = bytes.first, isWordByte(b) { f |= Self.continuesWordBit }
        if isSentenceEnd(bytes[...]) { f |= Self.endsSentenceBit }
        if let b = bytes.last, isSpace(b) { f |= Self.endsWithSpaceBit }
        flags = f
        runs = UInt8(min(255, wordCount(bytes)))
    }

    var startsWithSpace: Bool { flags & Self.startsWithSpaceBit != 0 }
    var hasNewline: Bool { flags & Self.newlineBit != 0 }
    /// A control or end-of-generation token: never part of a suggestion's text.
    var special: Bool { flags & Self.specialBit != 0 }
    /// Starts with a word byte (and is not special): it continues a word it follows.
    var continuesWord: Bool { flags & Self.continuesWordBit != 0 }
    /// It ends a sentence (see `isSentenceEnd`).
    var endsSentence: Bool { flags & Self.endsSentenceBit != 0 }
    var endsWithSpace: Bool { flags & Self.endsWithSpaceBit != 0 }
}

extension Engine {
    /// What the model reads for a suggest: the context tokens (`context`, then the prefix
    /// without its healed last tokens; `documentStart` when that leaves nothing), the
    /// healed bytes the first suggested token must start with, how many tokens were healed,
    /// and how many of the healed bytes were not typed (the space after the context).
    func suggestContext(prefix: String, _ o: SuggestOptions)
        -> (ids: [Int32], heal: [UInt8], healedTokens: Int, untyped: Int) {
        let tok = model.tokenizer
        var ids: [Int32] = []
        var typed = prefix
        var untyped = 0
        if let c = o.context {
            var text = Substring(c)
            while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
            if !text.isEmpty {
                ids = tok.encode(String(text), parseSpecial: false)
                // The field's text follows the context on its line after a space, as a
                // label's value does ("Subject: Leak under…"), or starts the next line when
                // the context ends with one. The space is tokenized with the prefix (its
                // first word's token carries it) and healed, so no suggestion starts with it.
                if text.utf8.last != 0x0A {
                    typed = " " + prefix
                    untyped = 1
                }
            }
        }
        let typedIDs = tok.encode(typed, parseSpecial: false)
        // Token healing: text typed so far usually ends inside a word (or with a space the
        // next word's token would have absorbed), i.e. with a token the model would rarely
        // produce there. Back up over the last token and make the first suggested token
        // start with its bytes, so the suggestion continues the word. The removed token
        // itself stays a candidate, so nothing is lost when the word was complete. A partial
        // word can span several tokens (" toni" is " ton" + "i"): back up over the tokens of
        // the current word (at most 3) as long as some token still starts with everything
        // removed, so " tonight" can follow.
        var heal: [UInt8] = []
        var healedTokens = 0
        var removed: [UInt8] = []
        var k = 1
        while k <= min(3, typedIDs.count) {
            removed = tokenBytes[Int(typedIDs[typedIDs.count - k])] + removed
            if k == 1 || !tokens(startingWith: removed).isEmpty {
                heal = removed
                healedTokens = k
            }
            if let first = removed.first, isSpace(first) { break }  // reached the word's start
            k += 1
        }
        ids += typedIDs.dropLast(healedTokens)
        // Nothing before the cursor: predict what a text starts with.
        if ids.isEmpty { ids = [documentStart] }
        // The space after the context is among the healed bytes when every typed token was.
        return (ids, heal, healedTokens, healedTokens == typedIDs.count ? untyped : 0)
    }

    /// The first tokens: the `SuggestMemo.width` likeliest tokens that agree with the
    /// healed bytes (ties to the lower id; no end-of-generation token), into `out`, and log
    /// Σ exp(logit) over every token that agrees: the healed constraint's mass, which turns
    /// a first token's logit into its probability given the typed text.
    ///
    /// A token agrees when its bytes start with the healed bytes. With none (an empty
    /// prefix: the start of a field) every token agrees except those starting with
    /// whitespace, which a field's text does not.
    func firstTokens(_ l: UnsafeBufferPointer<Float>, heal: [UInt8], into out: inout [(id: Int32, logit: Float)]) -> Double {
        let agreeing = heal.isEmpty ? tokensNotStartingWithSpace[...] : tokensByBytes[tokens(startingWith: heal)]
        let tok = model.tokenizer
        let k = SuggestMemo.width
        out.removeAll(keepingCapacity: true)
        return agreeing.withUnsafeBufferPointer { ids in
            var m = -Float.infinity
            for id in ids {
                let v = l[Int(id)]
                m = max(m, v)
                // Higher logit first, ties to the lower id (the order of a scan by id).
                @inline(__always) func before(_ a: (id: Int32, logit: Float)) -> Bool { v > a.logit || (v == a.logit && id < a.id) }
                if out.count == k && !before(out[k - 1]) { continue }
                // After the cheap test: a set lookup per token was half of this scan.
                if tok.isEOG(id) { continue }
                var pos = out.count
                while pos > 0 && before(out[pos - 1]) { pos -= 1 }
                out.insert((id, v), at: pos)
                if out.count > k { out.removeLast() }
            }
            guard m.isFinite else { return -.infinity }
            // Σ exp(l − m) over the agreeing tokens (most of the vocabulary when nothing of a
            // word is typed), 8 gathered lanes at a time.
            let mv = SIMD8<Float>(repeating: m)
            var sum = 0.0
            var i = 0
            while i + 8 <= ids.count {
                var lanes = SIMD8<Float>()
                for j in 0..<8 { lanes[j] = l[Int(ids[i + j])] }
                sum += Double(FastMath.exp(lanes - mv).sum())
                i += 8
            }
            while i < ids.count {
                sum += Double(expf(l[Int(ids[i])] - m))
                i += 1
            }
            return Double(m) + log(sum)
        }
    }
}
