import SLMTestSupport
import XCTest
@testable import SLMConstraint

/// Each supported keyword compiles and constrains; each unsupported keyword is an error
/// naming its JSON path.
final class JSONSchemaCompileTests: XCTestCase {
    func compile(_ s: String, file: StaticString = #filePath, line: UInt = #line) throws -> SchemaAutomaton {
        do { return try JSONSchemaCompiler.compile(s) } catch {
            XCTFail("\(error)", file: file, line: line)
            throw error
        }
    }

    func check(_ schema: String, accepts good: [String], rejects bad: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try compile(schema, file: file, line: line)
        for g in good { XCTAssertTrue(a.accepts(Array(g.utf8)), "\(schema) should accept \(g)", file: file, line: line) }
        for b in bad { XCTAssertFalse(a.accepts(Array(b.utf8)), "\(schema) should reject \(b)", file: file, line: line) }
    }

    func expectError(_ schema: String, _ code: SchemaError.Code, path: String, file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try JSONSchemaCompiler.compile(schema)
            XCTFail("\(schema) compiled; expected \(code) at \(path)", file: file, line: line)
        } catch {
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            XCTAssertEqual(error.path, path, "\(error)", file: file, line: line)
        }
    }

    func testTypes() throws {
        try check(#"{"type":"string"}"#, accepts: [#""""#, #""a b""#, #""é\n\u00e9""#], rejects: ["", "a", #""a"#, #""a""b""#, "\"\u{01}\""])
        try check(#"{"type":"integer"}"#, accepts: ["0", "-7", "123456789012345"], rejects: ["01", "-0", "1.5", "1e3", "1234567890123456", "-", "+1"])
        try check(#"{"type":"number"}"#, accepts: ["0", "-0.5", "1e3", "2.5E-10", "-12.25e+2"], rejects: ["1.", ".5", "01", "1e", "--1", "1e1234"])
        try check(#"{"type":"boolean"}"#, accepts: ["true", "false"], rejects: ["tru", "null", "1"])
        try check(#"{"type":"null"}"#, accepts: ["null"], rejects: ["nul", "0", "\"null\""])
        try check(#"{"type":"object"}"#, accepts: ["{}"], rejects: [#"{"a":1}"#, "{ }", "[]"])
        try check(#"{"type":["integer","null"]}"#, accepts: ["5", "null"], rejects: ["\"5\"", "true"])
        try check(#"{"type":["string","boolean","array"],"items":{"type":"null"}}"#, accepts: ["\"x\"", "false", "[null,null]", "[]"], rejects: ["null", "1"])
        try check(#"{"type":["integer","number"]}"#, accepts: ["1", "1.5"], rejects: ["x"])
    }

    func testPropertiesRequiredAndOrder() throws {
        let s = #"{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["b"],"additionalProperties":false}"#
        try check(s, accepts: [#"{"b":""}"#, #"{"a":1,"b":"x"}"#, #"{"a":1,"b":"x","c":true}"#, #"{"b":"x","c":false}"#],
                  rejects: ["{}", #"{"a":1}"#, #"{"b":"x","a":1}"#, #"{"c":true,"b":"x"}"#, #"{"b":"x","d":1}"#,
                            #"{"b":"x",}"#, #"{"b":"x","b":"y"}"#, #"{ "b":"x"}"#, #"{"b": "x"}"#])
        // Missing additionalProperties: output is closed all the same.
        try check(#"{"type":"object","properties":{"a":{"type":"null"}}}"#, accepts: ["{}", #"{"a":null}"#], rejects: [#"{"b":null}"#])
    }

    func testEnumAndConst() throws {
        try check(#"{"enum":["on","off",null,1,12,-2.5,true]}"#, accepts: [#""on""#, #""off""#, "null", "1", "12", "-2.5", "true"],
                  rejects: [#""o""#, #""onn""#, "2", "-2.50", "false", "121"])
        try check(#"{"type":"string","enum":["a\"b","日本"]}"#, accepts: [#""a\"b""#, "\"日本\""], rejects: [#""a\u0022b""#, "\"日\""])
        try check(#"{"const":"fixed"}"#, accepts: [#""fixed""#], rejects: [#""fixe""#])
        try check(#"{"type":"integer","enum":[1,5],"minimum":0}"#, accepts: ["1", "5"], rejects: ["0"])
    }

    func testIntegerBounds() throws {
        try check(#"{"type":"integer","minimum":0,"maximum":100}"#, accepts: ["0", "7", "42", "100"], rejects: ["-1", "101", "1000", "-0", "00"])
        try check(#"{"type":"integer","minimum":-20,"maximum":-5}"#, accepts: ["-5", "-20", "-13"], rejects: ["-4", "-21", "0", "5"])
        try check(#"{"type":"integer","minimum":10}"#, accepts: ["10", "999999999999999"], rejects: ["9", "-1", "1000000000000000"])
        try check(#"{"type":"integer","maximum":-3}"#, accepts: ["-3", "-999999999999999"], rejects: ["-2", "0"])
        // Prefixes that cannot land in range are refused as typed.
        let a = try compile(#"{"type":"integer","minimum":50,"maximum":60}"#)
        XCTAssertNil(a.step(a.initialState, Array("7".utf8)))
        XCTAssertNotNil(a.step(a.initialState, Array("5".utf8)))
        XCTAssertNil(a.step(a.initialState, Array("-".utf8)))
        XCTAssertTrue(a.isComplete(a.step(a.initialState, Array("55".utf8))!), "no third digit fits, so the value is closed")
    }

    func testMaxLengthCountsCodePoints() throws {
        try check(#"{"type":"string","maxLength":2}"#, accepts: [#""ab""#, "\"日本\"", "\"😀x\"", #""\n\u0041""#, #""""#],
                  rejects: [#""abc""#, "\"日本語\"", #""\n\n\n""#])
        try check(#"{"type":"string","maxLength":0}"#, accepts: [#""""#], rejects: [#""a""#])
    }

    func testArrays() throws {
        try check(#"{"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"maxItems":3}"#,
                  accepts: ["[]", "[1]", "[1,2,3]"], rejects: ["[1,2,3,4]", "[10]", "[1,]", "[,1]", "[ 1]"])
        try check(#"{"type":"array","items":{"type":"array","items":{"type":"string"}}}"#, accepts: [#"[[],["a","b"]]"#], rejects: [#"[["a"],"b"]"#])
    }

    func testStringEscapesAndUTF8() throws {
        try check(#"{"type":"string"}"#, accepts: [#""\"\\\/\b\f\n\r\t\u00ff\uFFFD""#, "\"\u{7F}\""],
                  rejects: [#""\x""#, #""\ud800""#, #""\uDFFF""#, #""\u12""#, "\"\u{0A}\""])
        let a = try compile(#"{"type":"string"}"#)
        for bad: [UInt8] in [[0x22, 0xC0, 0x80, 0x22], [0x22, 0xE0, 0x80, 0x80, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22],
                             [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], [0x22, 0x80, 0x22], [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22]] {
            XCTAssertFalse(a.accepts(bad), "\(bad)")
        }
    }

    func testMaxOutputBytes() throws {
        XCTAssertEqual(try compile(#"{"enum":["a","bcd",12]}"#).maxOutputBytes, 5)
        XCTAssertEqual(try compile(#"{"type":"integer","minimum":-5,"maximum":100}"#).maxOutputBytes, 4)
        XCTAssertEqual(try compile(#"{"type":"string","maxLength":3}"#).maxOutputBytes, 20)
        XCTAssertNil(try compile(#"{"type":"string"}"#).maxOutputBytes)
        XCTAssertNil(try compile(#"{"type":"array","items":{"type":"null"}}"#).maxOutputBytes)
        XCTAssertEqual(try compile(#"{"type":"array","items":{"type":"null"},"maxItems":2}"#).maxOutputBytes, 11)
        XCTAssertEqual(try compile(#"{"type":"object","properties":{"a":{"type":["null","boolean"]}}}"#).maxOutputBytes, 2 + 4 + 5 + 1)
        let intent = try compile(IntentSchema.text)
        XCTAssertEqual(intent.maxOutputBytes.map { $0 >= #"{"action":"turn_off","device":"thermostat","room":"living_room","value":100}"#.utf8.count }, true)
    }

    func testAnnotationsAreAccepted() throws {
        try check(#"{"title":"t","description":"d","$comment":"c","$schema":"x","examples":[1],"default":1,"type":"integer"}"#,
                  accepts: ["1"], rejects: ["x"])
    }

    func testUnsupportedKeywordsNameTheirPath() {
        for kw in [##""$ref":"#/x""##, #""pattern":"a""#, #""format":"date""#, #""minLength":1"#, #""anyOf":[]"#, #""oneOf":[]"#,
                   #""allOf":[]"#, #""exclusiveMinimum":1"#, #""minItems":1"#, #""uniqueItems":true"#, #""patternProperties":{}"#,
                   #""if":{}"#, #""not":{}"#, #""$defs":{}"#] {
            let name = String(kw.dropFirst().prefix { $0 != "\"" })
            expectError(#"{"type":"object","properties":{"room":{"type":"string","# + kw + "}}}", .unsupportedKeyword,
                        path: "#/properties/room/" + name)
        }
        expectError(#"{"type":"object","additionalProperties":true}"#, .unsupportedKeyword, path: "#/additionalProperties")
        expectError(#"{"type":"object","additionalProperties":{"type":"string"}}"#, .unsupportedKeyword, path: "#/additionalProperties")
        expectError(#"{"type":"array","items":[{"type":"string"}]}"#, .unsupportedKeyword, path: "#/items")
        expectError(#"{"type":"number","minimum":0}"#, .unsupportedKeyword, path: "#/minimum")
        expectError(#"{"enum":[[1]]}"#, .unsupportedKeyword, path: "#/enum/0")
        expectError(#"{"enum":["a"],"const":"a"}"#, .unsupportedKeyword, path: "#/const")
        expectError(#"{"type":"array","items":{"type":"object","properties":{"a/b":{"type":"integer","pattern":"x"}}}}"#,
                    .unsupportedKeyword, path: "#/items/properties/a~1b/pattern")
    }

    func testInvalidValuesAndEmptyLanguages() {
        expectError("{", .invalidJSON, path: "#")
        expectError("true", .invalidValue, path: "#")
        expectError("{}", .invalidValue, path: "#")
        expectError(#"{"type":"date"}"#, .invalidValue, path: "#/type")
        expectError(#"{"type":["string","date"]}"#, .invalidValue, path: "#/type/1")
        expectError(#"{"type":"string","maxLength":-1}"#, .invalidValue, path: "#/maxLength")
        expectError(#"{"type":"integer","maxLength":3}"#, .invalidValue, path: "#/maxLength")
        expectError(#"{"type":"integer","minimum":1.5}"#, .invalidValue, path: "#/minimum")
        expectError(#"{"type":"integer","minimum":5,"maximum":4}"#, .emptyLanguage, path: "#/minimum")
        expectError(#"{"enum":[]}"#, .emptyLanguage, path: "#/enum")
        expectError(#"{"type":"string","enum":["a",1]}"#, .invalidValue, path: "#/enum/1")
        expectError(#"{"type":"integer","enum":[1.5]}"#, .invalidValue, path: "#/enum/0")
        expectError(#"{"type":"integer","enum":[1,200],"maximum":100}"#, .invalidValue, path: "#/enum/1")
        expectError(#"{"type":"object","properties":{"a":{"type":"null"}},"required":["b"]}"#, .emptyLanguage, path: "#/required/0")
        expectError(#"{"type":"array"}"#, .invalidValue, path: "#")
        expectError(#"{"type":"integer","maximum":10000000000000000000}"#, .invalidValue, path: "#/maximum")
    }

    func testJSONParser() throws {
        let v = try OrderedJSON(parsing: #" { "b" : [1, -2.5e3, "x\u00e9\ud83d\ude00"], "a" : {"n":null,"t":true} } "#)
        XCTAssertEqual(v.compactText, #"{"b":[1,-2.5e3,"xé😀"],"a":{"n":null,"t":true}}"#)
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "\"\\ud800\"", "{\"a\":1,\"a\":2}", "nul", "\"\u{01}\"", "1 2"] {
            XCTAssertThrowsError(try OrderedJSON(parsing: bad), bad)
        }
        XCTAssertThrowsError(try OrderedJSON(parsing: String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
    }
}
