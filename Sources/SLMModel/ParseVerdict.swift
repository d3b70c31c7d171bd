#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SLMConstraint
import SLMLimits

/// Whether a constrained parse is a command of its schema at all, and which of its values
/// the schema could not hold.
///
/// Constrained decoding always produces a valid document: given "tell me a joke" a command
/// schema still gets a device, a room and an action. Two signals, both from the decode
/// itself (no extra pass):
///
/// - **Match score**: for each top-level field, the probability the model gave the tokens it
///   chose *before* the schema's mask renormalised them (its own distribution), geometric
///   mean over the fields. Inside the schema's domain the model wants what the schema allows;
///   outside it ("weather", "joke") most of its mass lies on values the schema refuses.
///   Measured against the per-field constrained confidence, a generated "null" branch and an
///   utterance likelihood ratio, this separated commands from non-commands best (README,
///   Limits).
/// - **Violations**: where the model's own first choice was refused (`Departure`) and what
///   it wanted is a value the schema cannot hold: a number outside `minimum`/`maximum`, or
///   a word of the utterance that no enum spelling covers in a field whose values the
///   utterance does not mention ("dishwasher" for a device). The constrained value there is
///   a plausible neighbour (18 for 180, "door" for "dishwasher"), never handed back.
public struct ParseVerdict: Sendable, Equatable {
    /// A value the model wanted that the schema cannot hold.
    public struct Violation: Sendable, Equatable {
        /// The top-level field.
        public var field: String
        /// The value the model wanted, as JSON text (`180`, `"dishwasher"`).
        public var wanted: String
        /// Why the schema cannot hold it.
        public var reason: String
        public init(field: String, wanted: String, reason: String) { self.field = field; self.wanted = wanted; self.reason = reason }
    }

    /// Per top-level field, in output order.
    public var fields: [FieldScore]
    public var violations: [Violation]
    /// Geometric mean over the fields of the model's own probability of its values, in [0, 1];
    /// 0 when the output is not a complete object.
    public var matchScore: Double

    /// The operating point when neither the intent nor the request sets one: in the gap
    /// between the highest-scoring non-command (0.21) and the lowest-scoring command (0.30)
    /// of the development sets (README, Limits).
    public static let defaultMinMatchScore = Limits.minMatchScore.defaultValue!
    /// Matched fields whose confidence is below this are worth confirming with the user: on
    /// the development set it flags 8 of the 12 wrong commands, and 22 of 63 in all.
    public static let defaultConfirmBelow = Limits.confirmBelow.defaultValue!

    /// Whether `utterance` states a number (digits, or an English number word): when it does
    /// not, values that may be null stay null (`ConstrainedGenerator`'s `noNumbers`).
    public static func statesNumber(_ utterance: String) -> Bool {
        if utterance.contains(where: { $0.isNumber }) { return true }
        return Words.split(utterance).contains { numberWords.contains($0) }
    }

    static let numberWords: Set = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                   "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                                   "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
                                   "hundred", "thousand", "half", "dozen"]

    public init(fields: [FieldScore], violations: [Violation], matchScore: Double) {
        self.fields = fields; self.violations = violations; self.matchScore = matchScore
    }

    /// Judges the compact JSON object `text` generated under `schema` (the schema decoding
    /// used, with `synonyms` in its enums) for `utterance`.
    ///
    /// Field figures are about values, not spellings: a choice made inside an enum string
    /// once only one value can come of it ("light" then `s` or `"`: lights or light, both the
    /// value light) decides nothing and is not counted.
    public static func judge(text: [UInt8], sampled: [SampledToken], departures: [Departure],
                             schema: OrderedJSON, synonyms: Synonyms = .none, utterance: String) -> ParseVerdict {
        let members = JSONSpans.members(text)
        let deciding = sampled.filter { t in
            guard let m = members?.first(where: { $0.valueStart < t.offset && t.offset < $0.end }),
                  text[m.valueStart] == UInt8(ascii: "\""),
                  case .array(let values)? = schema["properties"]?[m.key]?["enum"] else { return true }
            let written = String(decoding: text[(m.valueStart + 1)..<t.offset], as: UTF8.self)
            var reachable = Set<String>()
            for case .string(let spelling) in values where spelling.hasPrefix(written) {
                reachable.insert(synonyms.spellings[m.key]?[spelling] ?? spelling)
            }
            return reachable.count > 1
        }
        let fields = FieldConfidence.compute(text: text, sampled: deciding)
        guard let members, !fields.isEmpty else { return ParseVerdict(fields: fields, violations: [], matchScore: 0) }
        let logOwn = fields.reduce(0.0) { $0 + log(max($1.own, Double.leastNormalMagnitude)) }
        let score = exp(logOwn / Double(fields.count))
        let words = Words(utterance)
        var violations: [Violation] = []
        for d in departures where !d.valid && d.complete {
            guard let m = members.first(where: { $0.valueStart <= d.offset && d.offset <= $0.end }),
                  !violations.contains(where: { $0.field == m.key }) else { continue }
            let bytes = Array(text[m.valueStart..<d.offset]) + d.wanted
            guard let value = try? OrderedJSON(parsing: String(decoding: bytes, as: UTF8.self)),
                  let reason = reason(value, field: m.key, schema: schema, words: words) else { continue }
            violations.append(Violation(field: m.key, wanted: value.compactText, reason: reason))
        }
        return ParseVerdict(fields: fields, violations: violations, matchScore: score)
    }

    /// Why `field` cannot hold `value`, or nil when this departure is not a violation.
    static func reason(_ value: OrderedJSON, field: String, schema: OrderedJSON, words: Words) -> String? {
        guard case .object(let props)? = schema["properties"], let fs = props.first(where: { $0.key == field })?.value else { return nil }
        switch value {
        case .number(let n):
            guard allowsNumbers(fs) else { return nil }
            let integer = !n.contains(".") && !n.contains("e") && !n.contains("E")
            if !integer, case .string("integer")? = fs["type"] { return "not an integer" }
            if !integer, case .array(let ts)? = fs["type"], ts.contains(.string("integer")), !ts.contains(.string("number")) { return "not an integer" }
            guard let v = Double(n) else { return nil }
            if case .number(let hi)? = fs["maximum"], let h = Double(hi), v > h { return "above the maximum \(hi)" }
            if case .number(let lo)? = fs["minimum"], let l = Double(lo), v < l { return "below the minimum \(lo)" }
            return nil
        case .string(let s):
            // An enum field: only a word the user said, that no field's spelling covers, in a
            // field none of whose spellings the user said. The model also "wants" the verb it
            // read ("kill") for an action it then maps right, or a room's name in the device
            // field; those are not values the user asked for.
            guard case .array(let values)? = fs["enum"] else { return nil }
            guard words.contains(wanted: s) else { return nil }
            for p in props {
                guard case .array(let vs)? = p.value["enum"] else { continue }
                if vs.contains(.string(s)) { return nil }
            }
            return mentionsAny(values, words) ? nil : "not one of the values"
        default:
            return nil
        }
    }

    /// Whether the utterance mentions any of the string `values`.
    static func mentionsAny(_ values: [OrderedJSON], _ words: Words) -> Bool {
        values.contains { if case .string(let v) = $0 { return words.mentions(v) } else { return false } }
    }

    static func allowsNumbers(_ fs: OrderedJSON) -> Bool {
        switch fs["type"] {
        case .string(let t)?: return t == "integer" || t == "number"
        case .array(let ts)?: return ts.contains(.string("integer")) || ts.contains(.string("number"))
        default: return false
        }
    }

    /// The utterance as lowercase words of letters and digits, for "did the user say it".
    struct Words: Sendable {
        let words: [String]
        let joined: String

        init(_ text: String) {
            words = Self.split(text)
            joined = words.joined()
        }

        static func split(_ text: String) -> [String] {
            text.lowercased().split { !($0.isLetter || $0.isNumber) }.map(String.init)
        }

        /// Whether the spelling `phrase` (`living_room`, `light`) occurs as consecutive words;
        /// a word of four letters or more also matches as a prefix ("lights", "locked").
        func mentions(_ phrase: String) -> Bool {
            let p = Self.split(phrase)
            guard !p.isEmpty, p.count <= words.count else { return false }
            for i in 0...(words.count - p.count) {
                if p.indices.allSatisfy({ k in words[i + k] == p[k] || (p[k].count >= 4 && words[i + k].hasPrefix(p[k])) }) { return true }
            }
            return false
        }

        /// Whether the model's wanted value comes from the utterance: its words occur, or its
        /// letters without separators do ("washing_machine", "dishwasher").
        func contains(wanted: String) -> Bool {
            let letters = Self.split(wanted).joined()
            return mentions(wanted) || (letters.count >= 3 && joined.contains(letters))
        }
    }
}

/// The top-level fields where a departure could turn out to be a violation, so only their
/// departures are worth the extra passes that find what the model wanted: fields that may
/// hold a number, and enum fields none of whose spellings the utterance mentions. A command
/// that names its device and room costs nothing extra there. Once one violation is found the
/// parse cannot match, and further departures are not probed (`isViolation`).
public struct DepartureFilter: Sendable, Equatable {
    public let fields: Set<String>
    let schema: OrderedJSON
    let words: ParseVerdict.Words

    public static func == (a: DepartureFilter, b: DepartureFilter) -> Bool { a.fields == b.fields && a.schema == b.schema && a.words.words == b.words.words }

    public init(schema: OrderedJSON, utterance: String) {
        var fields: Set<String> = []
        let words = ParseVerdict.Words(utterance)
        if case .object(let props)? = schema["properties"] {
            for p in props {
                if ParseVerdict.allowsNumbers(p.value) {
                    fields.insert(p.key)
                } else if case .array(let values)? = p.value["enum"], !ParseVerdict.mentionsAny(values, words) {
                    fields.insert(p.key)
                }
            }
        }
        self.fields = fields
        self.schema = schema
        self.words = words
    }

    public func worthProbing(field: String) -> Bool { fields.contains(field) }

    /// Whether the model wanting `value` (JSON text) in `field` is a violation (ParseVerdict).
    public func isViolation(field: String, value: [UInt8]) -> Bool {
        guard let v = try? OrderedJSON(parsing: String(decoding: value, as: UTF8.self)) else { return false }
        return ParseVerdict.reason(v, field: field, schema: schema, words: words) != nil
    }
}
