import FoundationEssentials
import XCTest
import SLMTestSupport
@testable import SLMProtocol

/// `JSONParser` against the v1 parser it replaced (`JSONDecoder` decoding an open value, as
/// `JSONValue` did): the same value or an error on the same texts, so no client sees the
/// change (docs/PROTOCOL.md §4 documents the v1 leniencies both keep).
final class JSONParserTests: XCTestCase {
    /// The v1 decoding, kept here as the oracle.
    private enum V1: Decodable {
        case null, bool(Bool), int(Int64), double(Double), string(String), array([V1]), object([String: V1])

        private struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            if var a = try? decoder.unkeyedContainer() {
                var items: [V1] = []
                while !a.isAtEnd { items.append(try a.decode(V1.self)) }
                self = .array(items)
                return
            }
            if let o = try? decoder.container(keyedBy: Key.self) {
                var members: [String: V1] = [:]
                for k in o.allKeys { members[k.stringValue] = try o.decode(V1.self, forKey: k) }
                self = .object(members)
                return
            }
            let s = try decoder.singleValueContainer()
            if s.decodeNil() { self = .null }
            else if let b = try? s.decode(Bool.self) { self = .bool(b) }
            else if let i = try? s.decode(Int64.self) { self = .int(i) }
            else if let d = try? s.decode(Double.self) { self = .double(d) }
            else { self = .string(try s.decode(String.self)) }
        }

        static func parse(_ bytes: [UInt8]) -> V1? { try? JSONDecoder().decode(V1.self, from: Data(bytes)) }
    }

    /// Strict: `.int` and `.double` are different, doubles compare by bits.
    private func same(_ a: JSONValue, _ b: V1) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x.bitPattern == y.bitPattern
        case let (.double(x), .int(y)):
            // Where v1 was not exact (`testNumbersAreReadExactly`): an underflow it read as 0,
            // or more digits than a Double holds, which it rounded to an integer.
            return (x == 0 && y == 0) || (abs(x) >= 0x1p53 && x == Double(y))
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case let (.object(x), .object(y)):
            return x.count == y.count && x.allSatisfy { k, v in y[k].map { same(v, $0) } ?? false }
        default: return false
        }
    }

    /// Both parse `text` to the same value, or both refuse it. Returns whether it parsed.
    @discardableResult
    private func agree(_ text: [UInt8], _ context: @autoclosure () -> String = "", file: StaticString = #filePath,
                       line: UInt = #line) -> Bool {
        let ours = try? JSONValue.parse(text)
        let theirs = V1.parse(text)
        let shown = String(decoding: text.prefix(200), as: UTF8.self).debugDescription
        switch (ours, theirs) {
        case (nil, nil): return false
        case let (a?, b?):
            XCTAssert(same(a, b), "\(shown): \(a) against v1 \(b) \(context())", file: file, line: line)
            return true
        case let (a?, nil): XCTFail("\(shown): parsed to \(a), v1 refused it \(context())", file: file, line: line)
        case (nil, _?): XCTFail("\(shown): refused, v1 parsed it \(context())", file: file, line: line)
        }
        return false
    }

    func testTheV1ParsersEdges() {
        let texts = [
            #"{"a":1,"a":2}"#, "\u{FEFF}{}", "\u{FEFF}\u{FEFF}{}", " \u{FEFF}{}", "1.0", "1e2", "1E+2", "1e-2", "0.1e1", "-0", "-0.0",
            "9223372036854775807", "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
            "12345678901234567890", "123456789012345678.0", "1e18", "1e19", "1e400", "5e-324", "1.5e300",
            "01", "-01", "00", "1.", ".5", "+1", "-", "1e+", "0x10", "NaN", "Infinity", "1.5E-3",
            "[1,]", "{\"a\":1,}", "[1,\n]", "[1,,2]", "{\"a\":1,,}", "[,]", "{,}", " [ ] ", "[] x", "[1 2]",
            "{\"a\":1 \"b\":2}", "{\"a\"}", "{\"a\":}", "{\"\":0}", "true false", "  ", "", "[", "nul", "tru",
            "[true,false,null]", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud83d\\ude00\"", "\"\\uD83D\\uDE00\"",
            "\"\\ud83d\\u0041\"", "\"\\u0000\"", "\"\\u00e9\"", "\"a\u{01}b\"", "\"a\tb\"", "\"\\/\"", "\"\\x\"",
            "\"\u{7F}\"", "[1]\u{0}", "\u{0}", "\"\\u12\"", "\"\\uzzzz\"", "\"abc", "\"a\\", "{\"a\":[1,{\"b\":null}],\"c\":\"\\n\"}",
        ]
        for t in texts { agree(Array(t.utf8)) }
        // Invalid UTF-8 inside and outside strings.
        for bad: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0xFF], [0x5B, 0xC3, 0xA9, 0x5D]] {
            agree(bad)
        }
    }

    /// Numbers by their exact decimal value, where v1's `Decimal` could not hold them.
    func testNumbersAreReadExactly() throws {
        let cases: [(String, JSONValue)] = [
            ("1e-200", .double(1e-200)), ("-1e-400", .double(-0.0)), ("0.000e999", .int(0)), ("-0.0", .int(0)),
            ("12345678901234567800000000000000000000000e-23", .int(123456789012345678)),
            ("123456789012345678.00000000000000000000000000000000000000001", .double(Double("123456789012345678")!)),
            ("9223372036854775807.0", .int(.max)), ("-9223372036854775808e0", .int(.min)),
            ("922337203685477580.8e1", .double(9223372036854775808)), ("1e18", .int(1_000_000_000_000_000_000)),
            ("1e999999999999999999999", .double(0)),
        ]
        for (text, want) in cases {
            if text.hasPrefix("1e9999") {
                XCTAssertThrowsError(try JSONValue.parse(Array(text.utf8)), text)
                continue
            }
            let got = try JSONValue.parse(Array(text.utf8))
            switch (got, want) {
            case let (.int(a), .int(b)): XCTAssertEqual(a, b, text)
            case let (.double(a), .double(b)): XCTAssertEqual(a.bitPattern, b.bitPattern, text)
            default: XCTFail("\(text): \(got), want \(want)")
            }
        }
    }

    func testNestingLimitIsTheV1Ones() throws {
        for depth in [1, 2, 64, JSONParser.maxNesting - 1, JSONParser.maxNesting, JSONParser.maxNesting + 1, 5000] {
            let arrays = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            let objects = String(repeating: "{\"a\":", count: depth) + "1" + String(repeating: "}", count: depth)
            XCTAssertEqual(agree(Array(arrays.utf8)), depth <= JSONParser.maxNesting, "arrays \(depth) deep")
            XCTAssertEqual(agree(Array(objects.utf8)), depth <= JSONParser.maxNesting, "objects \(depth) deep")
        }
        // Deep enough to overflow a recursive parser's stack without the limit: refused, with
        // where.
        let deep = String(repeating: "[", count: 1_000_000)
        XCTAssertThrowsError(try JSONValue.parse(Array(deep.utf8))) { error in
            XCTAssertEqual((error as? ProtocolError)?.code, .badJSON)
            XCTAssert("\(error)".contains("nested deeper than \(JSONParser.maxNesting) at byte \(JSONParser.maxNesting)"), "\(error)")
        }
    }

    /// The error says what and where, never what the payload says.
    func testErrorsNameTheFaultNotTheText() {
        for (text, fault) in [("{\"prompt\":\"secret words\" \"x\":1}", "expected ',' or '}' at byte 25"),
                              ("{\"prompt\":\"secret\twords\"}", "control character in a string at byte 17"),
                              ("{\"prompt\":\"secret words", "unterminated string at byte 23"),
                              ("{\"n\":1e999}", "a number out of range at byte 10")] {
            XCTAssertThrowsError(try JSONValue.parse(Array(text.utf8))) { error in
                XCTAssertEqual((error as? ProtocolError)?.code, .badJSON)
                XCTAssert("\(error)".contains(fault), "\(error)")
                XCTAssertFalse("\(error)".contains("secret"), "\(error)")
            }
        }
    }

    // MARK: - Generated payloads

    private struct Gen {
        var rng: TestRNG
        mutating func int(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        mutating func space() -> String { ["", "", "", " ", "\n", "\t ", "\r\n  "][int(7)] }

        mutating func number() -> String {
            let digits = { (g: inout Gen, n: Int) in String((0..<n).map { _ in Character(String(g.int(10))) }) }
            var s = int(4) == 0 ? "-" : ""
            if int(3) == 0 {  // integers around Int64's limits
                return s + String(1 + int(9)) + digits(&self, 16 + int(4))
            }
            s += int(5) == 0 ? "0" : String(1 + int(9)) + digits(&self, int(8))
            // Fractions and exponents on at most 15 significant digits, with exponents within
            // ±100: where v1 (through `Decimal`) and an exact reading agree.
            if int(3) == 0 { s += "." + (int(3) == 0 ? String(repeating: "0", count: 1 + int(3)) : digits(&self, 1 + int(6))) }
            if int(4) == 0 { s += ["e", "E"][int(2)] + ["", "+", "-"][int(3)] + String(int(int(5) == 0 ? 100 : 30)) }
            return s
        }

        mutating func string() -> String {
            var s = "\""
            for _ in 0..<int(12) {
                switch int(14) {
                case 0: s += "\\n"
                case 1: s += "\\\""
                case 2: s += "\\\\"
                case 3: s += "\\u" + String(format4: int(0xD800))
                case 4: s += "\\uD83D\\uDE00"
                case 5: s += "é"
                case 6: s += "😀"
                case 7: s += "\\/"
                case 8: s += "\\t"
                default: s += String(Character(Unicode.Scalar(UInt8(0x20 + int(0x5E)))).replacingBackslashAndQuote)
                }
            }
            return s + "\""
        }

        mutating func value(_ depth: Int) -> String {
            switch depth > 3 ? int(5) : int(8) {
            case 0: return "null"
            case 1: return ["true", "false"][int(2)]
            case 2: return number()
            case 3, 4: return string()
            case 5: return "[" + (0..<int(4)).map { _ in space() + value(depth + 1) + space() }.joined(separator: ",") + "]"
            default:
                return "{" + (0..<int(4)).map { _ in space() + string() + space() + ":" + space() + value(depth + 1) }
                    .joined(separator: ",") + space() + "}"
            }
        }
    }

    func testGeneratedPayloadsParseAsV1Did() {
        var g = Gen(rng: TestRNG(seed: 2026_11_29))
        var parsed = 0
        for i in 0..<3000 {
            let text = Array((g.space() + g.value(0) + g.space()).utf8)
            if agree(text, "(generated \(i))") { parsed += 1 }
        }
        XCTAssertGreaterThan(parsed, 2900, "the generator makes valid JSON")
    }

    /// Byte-level damage to valid payloads: every cut, insertion and substitution is refused
    /// by both parsers or read the same by both. Damage that breaks the UTF-8 is refused
    /// (v1 let some of it through inside strings).
    func testDamagedPayloadsAgreeWithV1() {
        var g = Gen(rng: TestRNG(seed: 7))
        let alphabet = Array("{}[],:\"\\ 0123456789-+.eEtrufalsn\u{1}".utf8) + [0xC3, 0xA9, 0xFF]
        var refused = 0
        for i in 0..<4000 {
            var text = Array(g.value(0).utf8)
            for _ in 0..<(1 + g.int(3)) where !text.isEmpty {
                let at = g.int(text.count)
                switch g.int(3) {
                case 0: text.remove(at: at)
                case 1: text.insert(alphabet[g.int(alphabet.count)], at: at)
                default: text[at] = alphabet[g.int(alphabet.count)]
                }
            }
            guard String(validating: text, as: UTF8.self) != nil else {
                XCTAssertThrowsError(try JSONValue.parse(text), "invalid UTF-8 (damaged \(i))")
                refused += 1
                continue
            }
            if !agree(text, "(damaged \(i))") { refused += 1 }
        }
        XCTAssertGreaterThan(refused, 1000, "the damage breaks payloads")
    }
}

private extension String {
    init(format4 v: Int) {
        let hex = String(v, radix: 16)
        self = String(repeating: "0", count: Swift.max(0, 4 - hex.count)) + hex
    }
}

private extension Character {
    /// The printable ASCII character, escaped where JSON needs it.
    var replacingBackslashAndQuote: String { self == "\\" ? "\\\\" : self == "\"" ? "\\\"" : String(self) }
}
