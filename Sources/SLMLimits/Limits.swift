/// One bound on a request member: its wire name, unit, range and default, defined once.
///
/// The protocol decoder checks requests against it, the engine checks the options it is
/// handed against it (a caller may bypass the decoder), slmctl prints it in `--help`, and a
/// test checks docs/PROTOCOL.md's tables against `Limits.all`. A limit changed here changes
/// every layer at once; the spec test then says which table row to update.
public struct Limit<Bound: Comparable & Sendable & CustomStringConvertible>: Sendable {
    /// The member as it is spelled on the wire (`max_tokens`).
    public let member: String
    /// What the number counts (`tokens`, `bytes`, `ms`, `entries`), or "" for a plain number.
    public let unit: String
    /// The least value allowed (or, with `lowerExcluded`, the value everything must exceed).
    public let lowerBound: Bound
    /// The greatest value allowed.
    public let upperBound: Bound
    /// True when `lowerBound` itself is refused: `top_p` 0 would keep no token.
    public let lowerExcluded: Bool
    /// The value used when the member is absent; nil when absence means "off" or is decided
    /// elsewhere (an intent, the server's configuration).
    public let defaultValue: Bound?

    init(_ member: String, _ unit: String, _ range: ClosedRange<Bound>, lowerExcluded: Bool = false,
         default defaultValue: Bound? = nil) {
        self.member = member
        self.unit = unit
        self.lowerBound = range.lowerBound
        self.upperBound = range.upperBound
        self.lowerExcluded = lowerExcluded
        self.defaultValue = defaultValue
    }

    /// `lowerBound...upperBound`, the lower bound included or not as `lowerExcluded` says.
    public var range: ClosedRange<Bound> { lowerBound...upperBound }

    /// Whether `value` is allowed.
    public func contains(_ value: Bound) -> Bool {
        value <= upperBound && (lowerExcluded ? value > lowerBound : value >= lowerBound)
    }
}

extension Limit {
    /// The range as docs/PROTOCOL.md's tables and error messages write it: `1…64`,
    /// `above 0, at most 1`, `0…2^53−1` for a bound one below a power of two past 2^30.
    public var rangeText: String {
        lowerExcluded ? "above \(Self.spell(lowerBound)), at most \(Self.spell(upperBound))"
                      : "\(Self.spell(lowerBound))…\(Self.spell(upperBound))"
    }

    static func spell(_ b: Bound) -> String {
        if let v = b as? Int64, v > 1 << 30, v < Int64.max, (v + 1) & v == 0 {
            return "2^\((v + 1).trailingZeroBitCount)−1"
        }
        if let d = b as? Double, d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
        // Swift prints 1e-6 as "1e-06"; the spec (and JSON) write "1e-6".
        var text = b.description
        if let e = text.firstIndex(of: "e"), text[text.index(after: e)...].hasPrefix("-0") {
            text.remove(at: text.index(e, offsetBy: 2))
        }
        return text
    }
}

/// Every request bound and default of the protocol, in one table. Counts and sizes are
/// `Int64` (as JSON integers are decoded), probabilities and factors `Double`.
public enum Limits {
    // MARK: Every request (§5)

    /// A string `id`, in UTF-8 bytes (an integer id is any i64).
    public static let idBytes = Limit<Int64>("id", "bytes", 1...128)

    // MARK: hello (§5.1)

    /// The client name in `hello`, in UTF-8 bytes.
    public static let clientBytes = Limit<Int64>("client", "bytes", 0...128)
    /// The highest protocol version a client may announce.
    public static let maxVersion = Limit<Int64>("max_version", "", 1...255, default: 1)

    // MARK: Generation options (§5.5)

    /// Tokens to generate (the server's own `max_tokens` cap applies within this).
    public static let maxTokens = Limit<Int64>("max_tokens", "tokens", 1...(1 << 20))
    /// Softmax temperature; 0 is greedy.
    public static let temperature = Limit<Double>("temperature", "", 0...100)
    /// Keep the k most likely tokens; 0 is off.
    public static let topK = Limit<Int64>("top_k", "tokens", 0...(1 << 20))
    /// Nucleus mass; 1 is off, 0 would keep no token.
    public static let topP = Limit<Double>("top_p", "", 0...1, lowerExcluded: true)
    /// Drop tokens below min_p × the top probability; 0 is off.
    public static let minP = Limit<Double>("min_p", "", 0...1)
    /// Penalty for recent tokens; 1 is off. The sampler divides by it, so 0 is refused;
    /// above 10 every recent token is all but banned, which is never what a client means.
    public static let repeatPenalty = Limit<Double>("repeat_penalty", "", 0...10, lowerExcluded: true)
    /// Recent tokens the repeat penalty looks at; 0 is off.
    public static let repeatWindow = Limit<Int64>("repeat_window", "tokens", 0...(1 << 16))
    /// Sampling seed: exact as a JSON number in every client (a double's 53-bit mantissa).
    public static let seed = Limit<Int64>("seed", "", 0...((1 << 53) - 1))
    /// How many `stop` strings.
    public static let stopCount = Limit<Int64>("stop", "entries", 0...8)
    /// One `stop` string, in UTF-8 bytes.
    public static let stopBytes = Limit<Int64>("stop", "bytes", 1...64)
    /// Wall-clock budget from receipt: one day at most, longer is almost surely a unit mistake.
    public static let deadlineMS = Limit<Int64>("deadline_ms", "ms", 1...86_400_000)
    /// A session key, in UTF-8 bytes.
    public static let sessionBytes = Limit<Int64>("session", "bytes", 1...128)

    // MARK: detokenize (§5.6)

    /// A token id on the wire (the vocabulary is checked by the server).
    public static let tokenID = Limit<Int64>("ids", "", 0...Int64(Int32.max))

    // MARK: suggest (§5.8)

    /// Suggestions wanted.
    public static let suggestN = Limit<Int64>("n", "", 1...8, default: 3)
    /// Floor on a suggestion's probability: below one chance in a million (after what was
    /// typed) is noise, not a prediction; plausible four-word phrases are ~1e-2…1e-5.
    public static let suggestMinProb = Limit<Double>("min_prob", "", 0...1, default: 1e-6)
    /// Tokens per suggestion.
    public static let suggestMaxTokens = Limit<Int64>("max_tokens", "tokens", 1...64, default: 8)
    /// Words per phrase suggestion; 0 is no limit.
    public static let suggestMaxWords = Limit<Int64>("max_words", "words", 0...64, default: 4)

    // MARK: choose (§5.9)

    /// How many options.
    public static let chooseOptions = Limit<Int64>("options", "entries", 1...32)

    // MARK: parse (§5.10)

    /// An intent name, in UTF-8 bytes.
    public static let intentBytes = Limit<Int64>("intent", "bytes", 0...128)
    /// Worked examples per request or intent: each costs prompt tokens on every cold request.
    public static let parseExamples = Limit<Int64>("examples", "entries", 0...16)
    /// Tokens a parse may generate (the server's `max_tokens` cap applies within this).
    public static let parseMaxTokens = Limit<Int64>("max_tokens", "tokens", 1...4096, default: 128)
    /// The least `match_score` a matched reply needs.
    public static let minMatchScore = Limit<Double>("min_match_score", "", 0...1, default: 0.25)
    /// Matched fields with a lower confidence are listed in `needs_confirmation`.
    public static let confirmBelow = Limit<Double>("confirm_below", "", 0...1, default: 0.5)

    /// One row of the table, for the spec test and for help texts.
    public struct Entry: Sendable {
        /// The spec section whose table lists the member (`5.5`).
        public let section: String
        public let member: String
        public let unit: String
        public let rangeText: String
        /// The default as the spec writes it; nil when the member has none of its own.
        public let defaultText: String?

        /// How the spec's tables write the range: a count or size that may be zero as
        /// `≤ N` (an absent member is the same as none), anything else as `rangeText`.
        public var specText: String {
            if rangeText.hasPrefix("0…"), unit == "bytes" || unit == "entries" { return "≤ " + rangeText.dropFirst(2) }
            return rangeText
        }
    }

    /// Every limit with the spec section that documents it.
    public static let all: [Entry] = {
        func e<B>(_ section: String, _ l: Limit<B>) -> Entry {
            Entry(section: section, member: l.member, unit: l.unit, rangeText: l.rangeText,
                  defaultText: l.defaultValue.map { Limit<B>.spell($0) })
        }
        return [
            e("5", idBytes), e("5.1", clientBytes), e("5.1", maxVersion),
            e("5.5", maxTokens), e("5.5", temperature), e("5.5", topK), e("5.5", topP), e("5.5", minP),
            e("5.5", repeatPenalty), e("5.5", repeatWindow), e("5.5", seed), e("5.5", stopCount),
            e("5.5", stopBytes), e("5.5", deadlineMS), e("5.5", sessionBytes),
            e("5.6", tokenID),
            e("5.8", suggestN), e("5.8", suggestMinProb), e("5.8", suggestMaxTokens), e("5.8", suggestMaxWords),
            e("5.9", chooseOptions),
            e("5.10", intentBytes), e("5.10", parseExamples), e("5.10", parseMaxTokens), e("5.10", minMatchScore),
            e("5.10", confirmBelow),
        ]
    }()
}
