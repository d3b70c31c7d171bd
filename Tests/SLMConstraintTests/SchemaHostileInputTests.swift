import SLMTestSupport
import XCTest
@testable import SLMConstraint

/// Schemas come from any client (`parse`, `complete`/`chat` with `schema`) and from intent
/// files. Each case here once trapped the daemon (Swift traps on overflow), blew its memory
/// outside the budget, or held the I/O thread for seconds; each must now be a typed error
/// or a bounded compile.
final class SchemaHostileInputTests: XCTestCase {
    func expectTooLarge(_ schema: String, mentioning words: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try JSONSchemaCompiler.compile(schema)
            XCTFail("compiled; expected tooLarge", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code, .tooLarge, "\(error)", file: file, line: line)
            XCTAssertTrue(error.description.contains(words), "\(error)", file: file, line: line)
        }
    }

    /// `abs(Int64.min)` traps: bounds at Int64.min were checked with abs().
    func testBoundsAtInt64MinAndMaxAreErrorsNotTraps() {
        expectTooLarge(#"{"type":"integer","minimum":-9223372036854775808}"#, mentioning: "10^18")
        expectTooLarge(#"{"type":"integer","maximum":9223372036854775807}"#, mentioning: "10^18")
        expectTooLarge(#"{"enum":[1],"maximum":-9223372036854775808}"#, mentioning: "10^18")
        expectTooLarge(#"{"enum":[1],"minimum":-9223372036854775808}"#, mentioning: "10^18")
        // Just inside the supported range still compiles and constrains.
        let a = try? JSONSchemaCompiler.compile(#"{"type":"integer","minimum":-1000000000000000000,"maximum":-999999999999999999}"#)
        XCTAssertEqual(a?.accepts(Array("-1000000000000000000".utf8)), true)
        XCTAssertEqual(a?.accepts(Array("0".utf8)), false)
    }

    /// Nested arrays of 2^31 items made `maxOutputBytes` overflow Int.
    func testHugeMaxItemsNestedDeepDoNotOverflow() throws {
        let inner = #"{"type":"array","maxItems":2147483646,"items":{"type":"array","maxItems":2147483646,"items":{"type":"array","maxItems":2147483646,"items":{"type":"integer"}}}}"#
        let deep = try JSONSchemaCompiler.compile(inner)
        XCTAssertNil(deep.maxOutputBytes, "a bound past Int is no bound")
        XCTAssertTrue(deep.accepts(Array("[[[1,2],[]],[]]".utf8)))
        let two = try JSONSchemaCompiler.compile(#"{"type":"object","properties":{"a":\#(inner),"b":\#(inner)}}"#)
        XCTAssertNil(two.maxOutputBytes)
        let long = try JSONSchemaCompiler.compile(#"{"type":"array","maxItems":2147483646,"items":{"type":"string","maxLength":2147483646}}"#)
        XCTAssertNil(long.maxOutputBytes)
        // Small bounds still give the exact figure: [ "ab" , "ab" ] = 2 + 2 × (4 + 1) − 1.
        XCTAssertEqual(try JSONSchemaCompiler.compile(#"{"type":"array","maxItems":2,"items":{"enum":["ab"]}}"#).maxOutputBytes, 11)
    }

    /// Property keys go into one trie per start position: 128 optional properties with
    /// ~400-byte names made millions of heap nodes (a 104 KB schema cost 0.8 GB).
    func testKeyTriesAreCappedBeforeTheyGrow() {
        let props = (0..<120).map { i in "\"\(String(repeating: "k", count: 400))\(i)\":{\"type\":\"null\"}" }
        let schema = "{\"type\":\"object\",\"properties\":{" + props.joined(separator: ",") + "}}"
        XCTAssertLessThan(schema.utf8.count, JSONSchemaCompiler.maxSchemaBytes)
        expectTooLarge(schema, mentioning: "trie nodes")
        // The same names as required properties need one trie path each: that compiles.
        let required = "{\"type\":\"object\",\"properties\":{" + props.prefix(60).joined(separator: ",") + "},\"required\":["
            + (0..<60).map { "\"\(String(repeating: "k", count: 400))\($0)\"" }.joined(separator: ",") + "]}"
        XCTAssertNoThrow(try JSONSchemaCompiler.compile(required))
        expectTooLarge(#"{"enum":[""# + String(repeating: "x", count: 2000) + #""]}"#, mentioning: "longer than")
    }

    /// A 1 MB schema of 80k members took 19 s in a quadratic duplicate-key check on the
    /// I/O thread. Schemas are now capped by size before they are parsed, and duplicate
    /// keys are found with a set.
    func testSchemaSizeIsCappedBeforeParsing() {
        let members = (0..<80_000).map { "\"p\($0)\":1" }.joined(separator: ",")
        expectTooLarge("{" + members + "}", mentioning: "at most \(JSONSchemaCompiler.maxSchemaBytes)")
        // Duplicate detection still works, at any size.
        XCTAssertThrowsError(try OrderedJSON(parsing: "{" + members + ",\"p5\":2}")) {
            XCTAssertTrue("\($0)".contains("duplicate member \"p5\""), "\($0)")
        }
        XCTAssertNoThrow(try OrderedJSON(parsing: "{" + members + "}"))
    }

    /// Enum spellings are deduplicated with a set (4096 values × 4096 comparisons before).
    func testLargeEnumsCompile() throws {
        let values = (0..<JSONSchemaCompiler.maxEnumValues).map { "\"v\($0)\"" } + ["\"v1\""]
        let a = try JSONSchemaCompiler.compile(#"{"enum":["# + values.dropLast().joined(separator: ",") + "]}")
        XCTAssertTrue(a.accepts(Array("\"v4095\"".utf8)))
    }
}
