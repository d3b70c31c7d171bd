import Foundation
import SLMConstraint
@testable import SLMServer
import XCTest

/// Intent files: what loads, what is refused and how the refusal reads.
final class IntentTests: XCTestCase {
    static let schema = #"{"type":"object","properties":{"action":{"enum":["on","off"]},"room":{"enum":["kitchen","hall"]},"level":{"type":["integer","null"],"minimum":0,"maximum":10}},"required":["action","room","level"],"additionalProperties":false}"#

    func intentText(name: String? = "lights", extra: String = "", examples: String = #"[["hall light on", {"level": null, "room": "hall", "action": "on"}]]"#) -> String {
        var members = [#""schema": \#(Self.schema)"#, #""instruction": "JSON please""#, #""examples": \#(examples)"#]
        if let name { members.append(#""name": "\#(name)""#) }
        if !extra.isEmpty { members.append(extra) }
        return "{" + members.joined(separator: ", ") + "}"
    }

    func testValidIntentCompilesAndExamplesFollowTheSchemaKeyOrder() throws {
        let i = try IntentRegistry.parse(intentText(extra: #""max_tokens": 40, "description": "d""#), file: "f.json", defaultName: "f")
        XCTAssertEqual(i.name, "lights")
        XCTAssertEqual(i.instruction, "JSON please")
        XCTAssertEqual(i.maxTokens, 40)
        XCTAssertEqual(i.description, "d")
        // The example was written {level, room, action}; the model is shown the schema's order.
        XCTAssertEqual(i.examples.map(\.output), [#"{"action":"on","room":"hall","level":null}"#])
        XCTAssertEqual(i.examples.map(\.utterance), ["hall light on"])
        XCTAssertTrue(i.schemaText.hasPrefix(#"{"type":"object","properties":{"action""#), i.schemaText)
        XCTAssertTrue(i.automaton.accepts(Array(#"{"action":"off","room":"kitchen","level":3}"#.utf8)))
        // Without a name the file name is used.
        XCTAssertEqual(try IntentRegistry.parse(intentText(name: nil), file: "x/y.json", defaultName: "y").name, "y")
    }

    func testSynonymsAndTheOperatingPoint() throws {
        let i = try IntentRegistry.parse(intentText(extra: #""synonyms": {"action": {"on": ["switch_on"]}, "room": {"hall": ["hallway", "corridor"]}}, "min_match_score": 0.25, "confirm_below": 0.6"#),
                                         file: "f.json", defaultName: "f")
        XCTAssertEqual(i.minMatchScore, 0.25)
        XCTAssertEqual(i.confirmBelow, 0.6)
        XCTAssertEqual(i.synonyms.spellings, ["action": ["switch_on": "on"], "room": ["hallway": "hall", "corridor": "hall"]])
        // Decoding may write a spelling; the reply maps it back (ParseJudging).
        XCTAssertTrue(i.schemaText.contains(#""enum":["kitchen","hall","hallway","corridor"]"#), i.schemaText)
        XCTAssertTrue(i.automaton.accepts(Array(#"{"action":"switch_on","room":"corridor","level":null}"#.utf8)))
        XCTAssertNil(try IntentRegistry.parse(intentText(), file: "f.json", defaultName: "f").minMatchScore, "the server's default then")
    }

    func testInvalidIntentFilesAreRefusedWithTheReason() {
        let cases: [(String, String)] = [
            ("[1]", "expected a JSON object"),
            ("{\"schema\": ", "invalid JSON"),
            (#"{"name": "a"}"#, "missing 'schema'"),
            (intentText(extra: #""temperature": 0.2"#), "unknown key 'temperature'"),
            (intentText(name: "bad name!"), "intent name 'bad name!'"),
            (#"{"schema": {"type": "string", "pattern": "x"}}"#, "schema:"),
            (intentText(examples: #"[["hall light on", {"action": "dim", "room": "hall", "level": null}]]"#), "examples[0]"),
            (intentText(examples: #"[["only the utterance"]]"#), "examples[0]: expected [utterance, object]"),
            (intentText(extra: #""max_tokens": 0"#), "'max_tokens'"),
            (intentText(extra: #""min_match_score": 1.5"#), "'min_match_score' must be a number in 0...1"),
            (intentText(extra: #""confirm_below": "high""#), "'confirm_below'"),
            (intentText(extra: #""synonyms": {"colour": {"red": ["crimson"]}}"#), "synonyms/colour: not a top-level property with an enum"),
            (intentText(extra: #""synonyms": {"room": {"hall": ["kitchen"]}}"#), "synonyms/room/hall: 'kitchen' is a value of the field itself"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try IntentRegistry.parse(text, file: "bad.json", defaultName: "bad")) { error in
                let message = "\(error)"
                XCTAssertTrue(message.hasPrefix("bad.json: "), message)
                XCTAssertTrue(message.contains(expected), "\(message) should mention \(expected)")
            }
        }
    }

    func testDirectoryLoadSkipsBadFilesAndDuplicatesAndReportsThem() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("intents-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try intentText(name: "lights").write(to: dir.appendingPathComponent("a.json"), atomically: true, encoding: .utf8)
        try intentText(name: "lights").write(to: dir.appendingPathComponent("b.json"), atomically: true, encoding: .utf8)
        try intentText(name: nil).write(to: dir.appendingPathComponent("heating.json"), atomically: true, encoding: .utf8)
        try "{".write(to: dir.appendingPathComponent("broken.json"), atomically: true, encoding: .utf8)
        try "not an intent".write(to: dir.appendingPathComponent("README.txt"), atomically: true, encoding: .utf8)
        let (intents, errors) = IntentRegistry.load(directory: dir.path)
        XCTAssertEqual(intents.keys.sorted(), ["heating", "lights"])
        XCTAssertEqual(errors.map { ($0.file as NSString).lastPathComponent }, ["b.json", "broken.json"])
        XCTAssertTrue(errors[0].message.contains("already defined by"), errors[0].message)
        // A missing directory is simply no intents.
        let none = IntentRegistry.load(directory: dir.appendingPathComponent("missing").path)
        XCTAssertTrue(none.intents.isEmpty && none.errors.isEmpty)

        let registry = IntentRegistry(intents)
        XCTAssertEqual(registry.names, ["heating", "lights"])
        XCTAssertNotNil(registry.intent(named: "heating"))
        registry.replace(with: [:])
        XCTAssertNil(registry.intent(named: "heating"))
    }

    func testTheShippedExampleIntentLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let (intents, errors) = IntentRegistry.load(directory: root.appendingPathComponent("docs/examples/intents.d").path)
        XCTAssertEqual(errors.map(\.description), [])
        let i = try XCTUnwrap(intents["smart_home"])
        XCTAssertGreaterThanOrEqual(i.examples.count, 8)
        for e in i.examples { XCTAssertTrue(i.automaton.accepts(Array(e.output.utf8)), e.output) }
    }

    func testCanonicalOrderRecursesThroughObjectsAndArrays() throws {
        let schema = try OrderedJSON(parsing: #"{"type":"object","properties":{"z":{"type":"array","items":{"type":"object","properties":{"b":{},"a":{}}}},"y":{}}}"#)
        let value = try OrderedJSON(parsing: #"{"y":1,"extra":true,"z":[{"a":1,"b":2}]}"#)
        XCTAssertEqual(canonical(value, schema: schema).compactText, #"{"z":[{"b":2,"a":1}],"y":1,"extra":true}"#)
    }

    /// A schema that trapped the compiler killed the daemon at start, on --check-config and
    /// on SIGHUP although intents_strict=false promises "logged and skipped"; a FIFO in the
    /// directory blocked the loader forever (the file was read before its size was checked).
    func testHostileIntentFilesAreSkippedNotFatal() throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("intents-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let nested = #"{"type":"array","maxItems":2147483646,"items":{"type":"array","maxItems":2147483646,"items":{"type":"array","maxItems":2147483646,"items":{"type":"integer"}}}}"#
        try #"{"schema": {"type":"integer","minimum":-9223372036854775808}}"#.write(to: dir.appendingPathComponent("a.json"), atomically: true, encoding: .utf8)
        try #"{"schema": {"type":"object","properties":{"a":\#(nested),"b":\#(nested)}}}"#.write(to: dir.appendingPathComponent("b.json"), atomically: true, encoding: .utf8)
        try intentText().write(to: dir.appendingPathComponent("lights.json"), atomically: true, encoding: .utf8)
        XCTAssertEqual(mkfifo(dir.appendingPathComponent("fifo.json").path, 0o600), 0)
        try Data(count: IntentRegistry.maxFileBytes + 1).write(to: dir.appendingPathComponent("huge.json"))

        let (intents, errors) = IntentRegistry.load(directory: dir.path)
        XCTAssertEqual(intents.keys.sorted(), ["b", "lights"], "the nested-array schema is valid and now compiles")
        let byFile = Dictionary(uniqueKeysWithValues: errors.map { (($0.file as NSString).lastPathComponent, $0.message) })
        XCTAssertEqual(byFile.keys.sorted(), ["a.json", "fifo.json", "huge.json"])
        XCTAssertTrue(byFile["a.json"]?.contains("10^18") == true, "\(byFile)")
        XCTAssertEqual(byFile["fifo.json"], "not a regular file")
        XCTAssertTrue(byFile["huge.json"]?.contains("at most \(IntentRegistry.maxFileBytes)") == true, "\(byFile)")
    }
}
