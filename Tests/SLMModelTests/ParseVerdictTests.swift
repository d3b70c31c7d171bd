import XCTest
@testable import SLMModel
@testable import SLMConstraint

/// The parts of a parse verdict that need no model: where values are in the text, which
/// departures are violations, the match score, synonyms and the number rule.
final class ParseVerdictTests: XCTestCase {
    static let schema = try! OrderedJSON(parsing: """
        {"type":"object","properties":{
          "device":{"enum":["light","heating","door"]},
          "room":{"enum":["kitchen","living_room"]},
          "action":{"enum":["turn_on","turn_off","set"]},
          "value":{"type":["integer","null"],"minimum":0,"maximum":100}},
         "required":["device","room","action","value"],"additionalProperties":false}
        """)

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testSpansOfFinishedAndUnfinishedObjects() {
        let text = bytes(#"{"a":"x,}","b":[1,{"c":2}],"d":18}"#)
        XCTAssertEqual(JSONSpans.members(text)?.map(\.key), ["a", "b", "d"])
        XCTAssertEqual(JSONSpans.members(text)?.map { String(decoding: text[$0.valueStart..<$0.end], as: UTF8.self) },
                       [#""x,}""#, #"[1,{"c":2}]"#, "18"])
        XCTAssertNil(JSONSpans.members(bytes(#"{"a":1"#)), "unfinished")
        XCTAssertEqual(JSONSpans.members(bytes("{}"))?.count, 0)
        // The value being written at the end of unfinished text.
        XCTAssertEqual(JSONSpans.openValue(bytes(#"{"a":"x","d":1"#))?.key, "d")
        XCTAssertEqual(JSONSpans.openValue(bytes(#"{"a":"x","d":1"#))?.valueStart, 13)
        XCTAssertEqual(JSONSpans.openValue(bytes(#"{"a":"#))?.key, "a", "a value may start with nothing written")
        XCTAssertEqual(JSONSpans.openValue(bytes(#"{"a":"li"#))?.valueStart, 5)
        XCTAssertNil(JSONSpans.openValue(bytes(#"{"a":"light""#)), "a closed string is not being written")
        XCTAssertNil(JSONSpans.openValue(bytes(#"{"a":1,"#)), "between members")
        XCTAssertNil(JSONSpans.openValue(bytes(#"{"a"#)), "inside a key")
        // Where a value ends: strings and containers at their closing byte, bare values one
        // byte later (a number is whole only once something follows it).
        XCTAssertEqual(JSONSpans.valueEnd(bytes(#""dish\"washer",x"#)), 14)
        XCTAssertEqual(JSONSpans.valueEnd(bytes("180}")), 4)
        XCTAssertNil(JSONSpans.valueEnd(bytes("180")))
        XCTAssertEqual(JSONSpans.valueEnd(bytes(#"[1,"]",2]x"#)), 9)
        XCTAssertNil(JSONSpans.valueEnd(bytes(#""open"#)))
    }

    func testFieldsScoreTheirOwnTokensBeforeAndAfterTheMask() {
        let text = bytes(#"{"device":"light","room":"kitchen","action":"set","value":40}"#)
        let sampled = [SampledToken(offset: 11, logprob: -0.1, logMass: -0.5), SampledToken(offset: 26, logprob: 0, logMass: 0),
                       SampledToken(offset: 45, logprob: -1, logMass: -2), SampledToken(offset: 58, logprob: -0.2, logMass: 0)]
        let v = ParseVerdict.judge(text: text, sampled: sampled, departures: [], schema: Self.schema, utterance: "set the kitchen light to 40")
        XCTAssertEqual(v.fields.map(\.key), ["device", "room", "action", "value"])
        XCTAssertEqual(v.fields[0].confidence, exp(-0.1), accuracy: 1e-6)
        XCTAssertEqual(v.fields[0].own, exp(-0.6), accuracy: 1e-6)
        XCTAssertEqual(v.fields[2].own, exp(-3), accuracy: 1e-6)
        XCTAssertEqual(v.matchScore, exp((-0.6 + 0 - 3 - 0.2) / 4), accuracy: 1e-6, "geometric mean of the fields' own probabilities")
        XCTAssertEqual(v.violations, [])
        XCTAssertEqual(ParseVerdict.judge(text: bytes(#"{"device":"#), sampled: sampled, departures: [], schema: Self.schema,
                                          utterance: "x").matchScore, 0, "an unfinished object scores 0")
    }

    /// With synonyms, a choice between spellings of one value ("light" then `s` or `"`) is no
    /// choice of value: it counts for neither confidence nor match score.
    func testChoicesBetweenSpellingsOfOneValueDecideNothing() throws {
        let syn = try Synonyms(try OrderedJSON(parsing: #"{"device": {"light": ["lights"]}}"#), schema: Self.schema)
        let decoding = syn.decodingSchema(Self.schema)
        let text = bytes(#"{"device":"light","room":"kitchen","action":"set","value":null}"#)
        let sampled = [SampledToken(offset: 11, logprob: -0.2, logMass: -0.1),  // "light": light (or lights) vs heating, door
                       SampledToken(offset: 16, logprob: -0.7, logMass: -0.3)]  // `"` rather than `s`: light, not lights
        let v = ParseVerdict.judge(text: text, sampled: sampled, departures: [], schema: decoding, synonyms: syn, utterance: "x")
        XCTAssertEqual(v.fields[0].confidence, exp(-0.2), accuracy: 1e-6)
        XCTAssertEqual(v.fields[0].own, exp(-0.3), accuracy: 1e-6)
        // Without the synonym, "light" after "light" is the only value too (the step is then
        // forced in practice); with two values sharing a prefix the step decides.
        let two = try OrderedJSON(parsing: #"{"type":"object","properties":{"device":{"enum":["light","lights"]}},"required":["device"]}"#)
        let w = ParseVerdict.judge(text: bytes(#"{"device":"light"}"#), sampled: sampled, departures: [], schema: two, utterance: "x")
        XCTAssertEqual(w.fields[0].confidence, exp(-0.9), accuracy: 1e-6)
    }

    func departure(at offset: Int, _ wanted: String, complete: Bool = true, valid: Bool = false) -> Departure {
        Departure(offset: offset, wanted: Array(wanted.utf8), complete: complete, valid: valid)
    }

    func testANumberPastItsBoundIsAViolation() {
        // The model wrote 18 where it meant 180: the departure is after "18" (offset 60).
        let text = bytes(#"{"device":"heating","room":"kitchen","action":"set","value":18}"#)
        let v = ParseVerdict.judge(text: text, sampled: [], departures: [departure(at: 62, "0")], schema: Self.schema,
                                   utterance: "set the kitchen heating to 180")
        XCTAssertEqual(v.violations, [.init(field: "value", wanted: "180", reason: "above the maximum 100")])
        let frac = ParseVerdict.judge(text: text, sampled: [], departures: [departure(at: 62, ".5")], schema: Self.schema, utterance: "18.5")
        XCTAssertEqual(frac.violations.map(\.reason), ["not an integer"])
        // A valid departure (the same value in other tokens) or an unfinished probe is not one.
        XCTAssertEqual(ParseVerdict.judge(text: text, sampled: [], departures: [departure(at: 62, "0", valid: true)],
                                          schema: Self.schema, utterance: "x").violations, [])
        XCTAssertEqual(ParseVerdict.judge(text: text, sampled: [], departures: [departure(at: 62, "0", complete: false)],
                                          schema: Self.schema, utterance: "x").violations, [])
    }

    func testAnEnumDepartureIsAViolationOnlyForAWordTheUserSaidAndNoValueCovers() {
        let text = bytes(#"{"device":"door","room":"kitchen","action":"turn_on","value":null}"#)
        func violations(_ wanted: String, _ utterance: String, at offset: Int = 11) -> [String] {
            ParseVerdict.judge(text: text, sampled: [], departures: [departure(at: offset, wanted)], schema: Self.schema,
                               utterance: utterance).violations.map { "\($0.field)=\($0.wanted)" }
        }
        XCTAssertEqual(violations(#"dishwasher""#, "turn on the dishwasher in the kitchen"), [#"device="dishwasher""#])
        XCTAssertEqual(violations(#"washing_machine""#, "start the Washing Machine"), [#"device="washing_machine""#],
                       "words in other case and separators still come from the utterance")
        XCTAssertEqual(violations(#"window""#, "turn on the dishwasher in the kitchen"), [], "not a word the user said")
        XCTAssertEqual(violations(#"kitchen""#, "turn on the kitchen dishwasher"), [], "another field's value")
        XCTAssertEqual(violations(#"dishwasher""#, "turn on the dishwasher door"), [], "the utterance names one of the field's values")
        XCTAssertEqual(violations(#"dishwasher""#, "turn on the dishwasher lights"), [], "a plural still names the value")
        // The departure after "tu" in the action: the wanted value is the written prefix + the probe.
        XCTAssertEqual(violations(#"rbo""#, "turbo the kitchen door", at: 46), [#"action="turbo""#])
    }

    func testWordsMatchWholeWordsAndLongPrefixes() {
        let w = ParseVerdict.Words("Turn on the living-room lights, please")
        XCTAssertTrue(w.mentions("living_room"))
        XCTAssertTrue(w.mentions("light"), "a plural of a word of four letters or more")
        XCTAssertFalse(w.mentions("tv"))
        XCTAssertFalse(ParseVerdict.Words("the button").mentions("on"), "short words match whole")
        XCTAssertTrue(w.contains(wanted: "livingroom"))
        XCTAssertFalse(w.contains(wanted: "ro"), "too short to count as letters found inside")
    }

    func testSynonymsWidenTheDecodingSchemaAndMapBack() throws {
        let table = try OrderedJSON(parsing: #"{"device": {"light": ["lights", "lamp"]}, "action": {"turn_off": ["kill"]}}"#)
        let syn = try Synonyms(table, schema: Self.schema)
        let decoding = syn.decodingSchema(Self.schema)
        XCTAssertEqual(decoding["properties"]?["device"]?["enum"], .array(["light", "heating", "door", "lights", "lamp"].map(OrderedJSON.string)))
        XCTAssertEqual(decoding["properties"]?["room"], Self.schema["properties"]?["room"])
        let automaton = try JSONSchemaCompiler.compile(decoding)
        let out = #"{"device":"lamp","room":"kitchen","action":"kill","value":null}"#
        XCTAssertTrue(automaton.accepts(Array(out.utf8)))
        XCTAssertEqual(syn.canonical(try OrderedJSON(parsing: out)).compactText,
                       #"{"device":"light","room":"kitchen","action":"turn_off","value":null}"#)
        XCTAssertEqual(Synonyms.none.decodingSchema(Self.schema), Self.schema)

        for (bad, path) in [(#"{"colour": {"red": ["crimson"]}}"#, "synonyms/colour"),
                            (#"{"value": {"1": ["one"]}}"#, "synonyms/value"),
                            (#"{"device": {"fan": ["blower"]}}"#, "synonyms/device/fan"),
                            (#"{"device": {"light": ["door"]}}"#, "synonyms/device/light"),
                            (#"{"device": {"light": ["lamp"], "door": ["lamp"]}}"#, "synonyms/device/door"),
                            (#"{"device": {"light": [""]}}"#, "synonyms/device/light"),
                            (#"{"device": ["lamp"]}"#, "synonyms/device")] {
            XCTAssertThrowsError(try Synonyms(try OrderedJSON(parsing: bad), schema: Self.schema), bad) { e in
                XCTAssertEqual((e as? SchemaError)?.path, path, "\(e)")
            }
        }
    }

    func testDeparturesAreProbedOnlyWhereTheyCouldBeViolations() {
        XCTAssertEqual(DepartureFilter(schema: Self.schema, utterance: "turn on the kitchen light").fields, ["value"])
        XCTAssertEqual(DepartureFilter(schema: Self.schema, utterance: "turn on the dishwasher").fields, ["device", "room", "value"])
        XCTAssertEqual(DepartureFilter(schema: Self.schema, utterance: "kill the lights").fields, ["room", "action", "value"])
        XCTAssertEqual(DepartureFilter(schema: Self.schema, utterance: "set the living room heating").fields, ["value"])
        // After the first violation the generator stops probing: the filter tells it which.
        let f = DepartureFilter(schema: Self.schema, utterance: "turn on the dishwasher to 180")
        XCTAssertTrue(f.isViolation(field: "value", value: bytes("180")))
        XCTAssertFalse(f.isViolation(field: "value", value: bytes("80")))
        XCTAssertTrue(f.isViolation(field: "device", value: bytes(#""dishwasher""#)))
        XCTAssertFalse(f.isViolation(field: "device", value: bytes(#""window""#)), "not a word the user said")
        XCTAssertFalse(f.isViolation(field: "device", value: bytes(#""dishw"#)), "unfinished")
    }

    func testAnUtteranceStatesANumberInDigitsOrWords() {
        XCTAssertTrue(ParseVerdict.statesNumber("set it to 21"))
        XCTAssertTrue(ParseVerdict.statesNumber("set a timer for ten minutes"))
        XCTAssertFalse(ParseVerdict.statesNumber("turn on the bedroom light"))
        XCTAssertFalse(ParseVerdict.statesNumber("someone is at the door"), "'one' inside a word is not a number")
    }
}
