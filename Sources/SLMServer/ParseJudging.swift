import SLMEngine
import SLMModel
import SLMConstraint
import SLMProtocol

/// What a `parse` reply adds to the engine's output: synonyms mapped to their values,
/// violated fields nulled, and whether the utterance matched the schema at the request's
/// operating point (see `ParseVerdict`).
struct ParseJudging: Sendable {
    let utterance: String
    /// The schema decoding used (with the synonyms in its enums).
    let schema: OrderedJSON
    let synonyms: Synonyms
    let minMatchScore: Double
    let confirmBelow: Double

    struct Judged {
        var text: String
        var matched: Bool
        var score: Double?
        var violations: [SLMProtocol.ParseResult.Violation]
        var confirm: [String]
        var confidence: [String: Double]
    }

    static func confidence(_ fields: [FieldScore]) -> [String: Double] {
        Dictionary(fields.map { ($0.key, $0.confidence) }, uniquingKeysWith: { a, _ in a })
    }

    static func unjudged(_ r: SLMEngine.ParseResult) -> Judged {
        Judged(text: r.text, matched: r.complete, score: nil, violations: [], confirm: [], confidence: confidence(r.confidence))
    }

    func judge(_ r: SLMEngine.ParseResult) -> Judged {
        guard r.complete, var output = try? OrderedJSON(parsing: r.text) else {
            return Judged(text: r.text, matched: false, score: nil, violations: [], confirm: [], confidence: Self.confidence(r.confidence))
        }
        let verdict = ParseVerdict.judge(text: Array(r.text.utf8), sampled: r.sampled, departures: r.departures,
                                         schema: schema, synonyms: synonyms, utterance: utterance)
        output = synonyms.canonical(output)
        // The value decoding put in a violated field is the schema's nearest stand-in for
        // what the user asked (18 for 180): it never leaves the daemon.
        if !verdict.violations.isEmpty, case .object(var members) = output {
            for v in verdict.violations {
                if let i = members.firstIndex(where: { $0.key == v.field }) { members[i].value = .null }
            }
            output = .object(members)
        }
        let matched = verdict.violations.isEmpty && verdict.matchScore >= minMatchScore
        return Judged(text: output.compactText, matched: matched, score: verdict.matchScore,
                      violations: verdict.violations.map {
                          .init(field: $0.field, wanted: (try? JSONValue.parse(Array($0.wanted.utf8))) ?? .string($0.wanted), reason: $0.reason)
                      },
                      confirm: matched ? verdict.fields.filter { $0.confidence < confirmBelow }.map(\.key) : [],
                      confidence: Self.confidence(verdict.fields))
    }
}
