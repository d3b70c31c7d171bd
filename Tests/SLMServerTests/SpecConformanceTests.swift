import Foundation
import SLMLimits
import SLMProtocol
import SLMTestSupport
import XCTest

/// docs/PROTOCOL.md, executed: its example exchanges, its request tables' member names and
/// its ranges, each checked against the real `slmd serve` on a real socket with the default
/// model and the example intents. When the spec and the daemon disagree this fails, naming
/// the section; fix whichever is wrong.
final class SpecConformanceTests: XCTestCase {
    static let root = TestPaths.packageRoot
    static var spec: String { (try? String(contentsOf: root.appendingPathComponent("docs/PROTOCOL.md"), encoding: .utf8)) ?? "" }

    var daemon: Daemon!
    var client: Client!

    override func setUpWithError() throws {
        daemon = try Daemon(settings: ["intents_dir=\(Self.root.path)/docs/examples/intents.d"])
        client = try Client(path: daemon.socket)
    }

    override func tearDown() {
        client = nil
        daemon = nil
    }

    // MARK: Helpers

    /// Sends a raw JSON payload and returns the frames up to the first reply or error.
    func exchange(_ json: String) -> [(type: FrameType, json: JSONValue)] {
        client.sendJSON(json)
        var frames: [(FrameType, JSONValue)] = []
        while let f = client.nextFrame() {
            guard let v = try? JSONValue.parse(f.payload) else { XCTFail("unparseable payload"); break }
            frames.append((f.type, v))
            if f.type != .event { break }
        }
        return frames
    }

    /// Every object key anywhere in `v`.
    static func keys(_ v: JSONValue) -> Set<String> {
        switch v {
        case .object(let o): return o.reduce(into: Set(o.keys)) { $0.formUnion(keys($1.value)) }
        case .array(let a): return a.reduce(into: []) { $0.formUnion(keys($1)) }
        default: return []
        }
    }

    static func matches(_ pattern: String, in text: String) -> [[String]] {
        guard let re = try? NSRegularExpression(pattern: pattern) else { return [] }
        let ns = text as NSString
        return re.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { m in
            (0..<m.numberOfRanges).map { m.range(at: $0).location == NSNotFound ? "" : ns.substring(with: m.range(at: $0)) }
        }
    }

    // MARK: Example exchanges

    /// One `→ request` with the `← kind {…}` lines documented after it.
    struct Example {
        var request: String
        var answers: [(kind: String, text: String)] = []
        var section: String
    }

    static func examples() -> [Example] {
        var out: [Example] = []
        var section = ""
        var inJSON = false
        for line in spec.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("#") { section = line }
            if line.hasPrefix("```") { inJSON = line == "```json"; continue }
            guard inJSON else { continue }
            if line.hasPrefix("→ ") {
                out.append(Example(request: String(line.dropFirst(2)), section: section))
            } else if line.hasPrefix("← "), !out.isEmpty {
                let rest = line.dropFirst(2)
                let kind = String(rest.prefix { $0 != " " })
                out[out.count - 1].answers.append((kind, String(rest.dropFirst(kind.count + 1))))
            } else if line.hasPrefix(" "), !out.isEmpty, !out[out.count - 1].answers.isEmpty {
                out[out.count - 1].answers[out[out.count - 1].answers.count - 1].text += line.trimmingCharacters(in: .whitespaces)
            }
        }
        return out
    }

    /// Members whose documented values are deterministic (greedy decoding, fixed model).
    static let comparedMembers = ["id", "op", "event", "finish_reason", "matched", "complete", "intent", "code",
                                  "generated_tokens", "prompt_tokens", "token_count", "cancelled"]

    func testEveryExampleExchange() throws {
        let examples = Self.examples()
        XCTAssertGreaterThanOrEqual(examples.count, 5, "the spec's → / ← examples")
        for ex in examples {
            let got = exchange(ex.request)
            let where_ = "\(ex.section): \(ex.request)"
            // Documented events first, then the final frame: same kinds in the same order.
            XCTAssertEqual(got.map { $0.type == .event ? "event" : $0.type == .reply ? "reply" : "error" },
                           ex.answers.map(\.kind), where_)
            for (doc, actual) in zip(ex.answers, got) {
                let documentedKeys = Set(Self.matches(#""([a-z_]+)":"#, in: doc.text).map { $0[1] })
                let missing = documentedKeys.subtracting(Self.keys(actual.json))
                XCTAssertTrue(missing.isEmpty, "\(where_): documented members \(missing.sorted()) not sent")
                guard case .object(let o) = actual.json else { continue }
                for m in Self.matches(#""([a-z_]+)":("(?:[^"\\]|\\.)*"|true|false|null|-?[0-9]+)(?=[,}])"#, in: doc.text)
                where Self.comparedMembers.contains(m[1]) {
                    // Only top-level members (nested ones, e.g. in `usage`, are looked up there).
                    let value = o[m[1]] ?? (o["usage"].flatMap { if case .object(let u) = $0 { return u[m[1]] } else { return nil } })
                    XCTAssertEqual(value.map { String(decoding: $0.serialized(), as: UTF8.self) }, m[2], "\(where_): `\(m[1])`")
                }
                if doc.kind == "event", let text = Self.matches(#""text":("(?:[^"\\]|\\.)*")"#, in: doc.text).first?[1] {
                    XCTAssertEqual(o["text"].map { String(decoding: $0.serialized(), as: UTF8.self) }, text, "\(where_): event text")
                }
                if doc.text.contains(#""result":null"#) { XCTAssertEqual(o["result"], .null, "\(where_): result") }
            }
        }
    }

    /// §5.1's hello exchange: every documented `model` and `limits` key is sent.
    func testHelloExample() throws {
        let block = try XCTUnwrap(Self.spec.components(separatedBy: "### 5.1 `hello`").dropFirst().first?
            .components(separatedBy: "```json\n").dropFirst().first?.components(separatedBy: "```").first)
        let lines = block.split(separator: "\n")
        let request = String(try XCTUnwrap(lines.first))
        let documented = try JSONValue.parse(Array(lines.dropFirst().joined().utf8))
        let got = exchange(request)
        XCTAssertEqual(got.count, 1)
        guard case .object(let doc) = documented, case .object(let o)? = got.first?.json else { return XCTFail("hello") }
        XCTAssertEqual(o["protocol_version"], doc["protocol_version"])
        XCTAssertEqual(o["op"], doc["op"])
        for part in ["model", "limits"] {
            guard case .object(let d)? = doc[part], case .object(let a)? = o[part] else { return XCTFail(part) }
            XCTAssertEqual(Set(d.keys).subtracting(a.keys), [], "§5.1 \(part) keys the daemon does not send")
        }
        guard case .object(let model)? = o["model"] else { return }
        XCTAssertEqual(model["file"], doc["model"].flatMap { if case .object(let m) = $0 { return m["file"] } else { return nil } })
        XCTAssertEqual(model["vocab_size"], .int(49152))
    }

    /// §11's worked bytes: the daemon's tokenize reply is the documented payload byte for byte,
    /// and the unknown-op error the documented one.
    func testWorkedExampleBytes() throws {
        func dump(_ name: String) throws -> [UInt8] {
            let after = try XCTUnwrap(Self.spec.components(separatedBy: "<!-- hexdump: \(name) -->").dropFirst().first)
            let body = try XCTUnwrap(after.components(separatedBy: "```text\n").dropFirst().first?.components(separatedBy: "```").first)
            var bytes: [UInt8] = []
            for line in body.split(separator: "\n") {
                let hex = line.dropFirst(10).prefix(48)
                bytes += hex.split(separator: " ").compactMap { UInt8($0, radix: 16) }
            }
            return Array(bytes.dropFirst(12))  // the header; the payload follows
        }
        client.sendRaw(Frame(type: .request, payload: try dump("tokenize-request")).encode())
        XCTAssertEqual(client.nextFrame()?.payload, try dump("tokenize-reply"), "§11 tokenize reply")
        client.sendJSON(#"{"id":8,"op":"translate"}"#)
        let error = try XCTUnwrap(client.nextFrame())
        XCTAssertEqual(error.type, .error)
        XCTAssertEqual(try JSONValue.parse(error.payload), try JSONValue.parse(try dump("unknown-op-error")))
    }

    // MARK: §10.3 rules

    func testTheIDIsEchoedWheneverItCanBeRead() throws {
        func final(_ json: String) -> [String: JSONValue] {
            guard case .object(let o)? = exchange(json).last?.json else { XCTFail("no answer to \(json)"); return [:] }
            return o
        }
        var o = final(#"{"id":6,"op":"tokenize","text":7}"#)
        XCTAssertEqual(o["code"], .string("bad_field")); XCTAssertEqual(o["id"], .int(6))
        o = final(#"{"id":"s","op":"translate"}"#)
        XCTAssertEqual(o["code"], .string("unknown_type")); XCTAssertEqual(o["id"], .string("s"))
        // A lone surrogate: the member holding it is named, and the id still echoed.
        o = final(#"{"id":5,"op":"tokenize","text":"\ud83d"}"#)
        XCTAssertEqual(o["code"], .string("bad_field")); XCTAssertEqual(o["id"], .int(5))
        guard case .string(let message)? = o["message"] else { return XCTFail("no message") }
        XCTAssertTrue(message.hasPrefix("field 'text':"), message)
        // Not JSON at all: no id can be read.
        o = final(#"{"id":5,"op":"tokenize","text":}"#)
        XCTAssertEqual(o["code"], .string("bad_json")); XCTAssertEqual(o["id"], .null)
        // The connection goes on.
        XCTAssertEqual(final(#"{"id":9223372036854775807,"op":"ping"}"#)["id"], .int(Int64.max), "i64 ids echoed exactly")
    }

    func testHelloIsOptionalAndRepeatable() throws {
        XCTAssertEqual(exchange(#"{"id":1,"op":"ping"}"#).first?.type, .reply, "no hello needed")
        for id in 2...3 {
            guard case .object(let o)? = exchange(#"{"id":\#(id),"op":"hello","max_version":1}"#).first?.json else { return XCTFail() }
            XCTAssertEqual(o["protocol_version"], .int(1))
        }
        XCTAssertEqual(exchange(#"{"id":4,"op":"ping"}"#).first?.type, .reply)
    }

    func testTooManyInFlightIsBusyForThatRequestOnly() throws {
        let d = try Daemon(settings: ["max_inflight_per_connection=1"])
        let c = try Client(path: d.socket)
        let long = #"{\"type\":\"object\",\"properties\":{\"story\":{\"type\":\"string\",\"maxLength\":2000}}}"#
        let parse = #"{"id":ID,"op":"parse","utterance":"tell me a long story","schema":"\#(long)","max_tokens":400}"#
        // Both frames in one write: the second is read while the first is in flight.
        c.sendRaw(Frame(type: .request, payload: Array(parse.replacingOccurrences(of: "ID", with: "1").utf8)).encode()
                  + Frame(type: .request, payload: Array(parse.replacingOccurrences(of: "ID", with: "2").utf8)).encode())
        let second = c.finish(.int(2)).final
        XCTAssertEqual(second?.errorCode, "busy", "\(String(describing: second))")
        c.send(Request(id: 3, .cancel(CancelRequest(target: 1))))
        XCTAssertNotNil(c.finish(.int(1)).final, "the first request still ends")
        XCTAssertEqual(c.request(.ping, id: 4)?.reply, .ping)
    }

    // MARK: Tables

    /// A valid request of each op that section's table documents, to which one member is
    /// added or replaced.
    static let bases: [String: String] = [
        "5": #"{"id":1,"op":"ping"}"#,
        "5.1": #"{"id":1,"op":"hello"}"#,
        "5.3": #"{"id":1,"op":"complete","prompt":"Hi","max_tokens":1,"stream":false}"#,
        "5.4": #"{"id":1,"op":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"stream":false}"#,
        "5.5": #"{"id":1,"op":"complete","prompt":"Hi","max_tokens":1,"stream":false}"#,
        "5.7": #"{"id":1,"op":"cancel","target":999}"#,
        "5.8": #"{"id":1,"op":"suggest","prefix":"Hi","n":1,"max_tokens":1}"#,
        "5.9": #"{"id":1,"op":"choose","prompt":"x","options":["a"]}"#,
        "5.10": #"{"id":1,"op":"parse","utterance":"lights off","intent":"smart_home","max_tokens":4}"#,
    ]

    /// `base` with `member` set to the JSON text `value` (replacing it if present).
    static func with(_ base: String, _ member: String, _ value: String) -> String {
        guard case .object(var o)? = try? JSONValue.parse(Array(base.utf8)),
              let v = try? JSONValue.parse(Array(value.utf8)) else { return base }
        o[member] = v
        return String(decoding: JSONValue.object(o).serialized(), as: UTF8.self)
    }

    func badField(_ request: String, naming member: String, _ context: String) {
        let got = exchange(request)
        guard case .object(let o)? = got.last?.json else { return XCTFail("\(context): no answer") }
        XCTAssertEqual(o["code"], .string("bad_field"), "\(context): \(request) → \(o)")
        if case .string(let message)? = o["message"] {
            XCTAssertTrue(message.contains(member), "\(context): the message names `\(member)`: \(message)")
        }
    }

    /// Every member a request table documents is read by the daemon: sent with the wrong JSON
    /// type it is `bad_field` naming it (a member the daemon did not read would be ignored).
    func testEveryDocumentedRequestMemberIsRead() throws {
        var checked = 0
        for (section, base) in Self.bases.sorted(by: { $0.key < $1.key }) {
            // Request tables are `member | type | …`; reply tables (`member | meaning`) have no
            // type column, and §5.1's table of the reply's model keys starts with `key`.
            let rows = ProtocolSpec(text: Self.spec).tables(inSection: section)
                .filter { $0.header.first == "member" && $0.header.contains("type") }.flatMap(\.rows)
            for row in rows {
                guard let name = row.first(where: { $0.hasPrefix("`") && $0.hasSuffix("`") && !$0.contains(" ") }) else { continue }
                let member = String(name.dropFirst().dropLast())
                // §5.1 documents the reply's `model`/`limits` keys in prose, not as rows.
                guard member.allSatisfy({ $0.isLowercase || $0 == "_" }) else { continue }
                let wrong = row.joined().contains("object") && !row.joined().contains("array") ? "7" : "{}"
                badField(Self.with(base, member, wrong), naming: member, "§\(section) `\(member)`")
                checked += 1
            }
        }
        // §5.6 lists two ops in one table, by op.
        badField(#"{"id":1,"op":"tokenize","text":{}}"#, naming: "text", "§5.6 `text`")
        badField(#"{"id":1,"op":"tokenize","text":"x","parse_special":{}}"#, naming: "parse_special", "§5.6 `parse_special`")
        badField(#"{"id":1,"op":"detokenize","ids":{}}"#, naming: "ids", "§5.6 `ids`")
        XCTAssertGreaterThan(checked, 40)
    }

    /// Every range of the limits table (which the spec's tables state, LimitsSpecTests) is
    /// enforced by the daemon: just outside it is `bad_field` naming the member.
    func testEveryDocumentedRangeIsEnforced() throws {
        for entry in Limits.all {
            let base = Self.bases[entry.section == "5.6" ? "5" : entry.section] ?? Self.bases["5"]!
            let context = "§\(entry.section) `\(entry.member)` \(entry.rangeText)"
            for value in outside(entry) {
                let request: String
                switch (entry.section, entry.member) {
                case ("5", "id"): request = #"{"op":"ping","id":\#(value)}"#
                case ("5.6", _): request = #"{"id":1,"op":"detokenize","ids":\#(value)}"#
                default: request = Self.with(base, entry.member, value)
                }
                badField(request, naming: entry.member, context)
            }
        }
    }

    /// JSON texts just outside `entry`'s range, as the member's type wants them.
    func outside(_ entry: Limits.Entry) -> [String] {
        guard let limit = Self.limits[entry.member + "/" + entry.section + "/" + entry.unit] else { return [] }
        return limit
    }

    /// The out-of-range values of each limit, built from the one table.
    static let limits: [String: [String]] = {
        var out: [String: [String]] = [:]
        func ints(_ l: Limit<Int64>, _ section: String, lowerToo: Bool = true) {
            var v = [String(l.upperBound + 1)]
            if lowerToo, l.lowerBound > Int64.min { v.append(String(l.lowerBound - 1)) }
            out[l.member + "/" + section + "/" + l.unit] = v
        }
        func doubles(_ l: Limit<Double>, _ section: String) {
            out[l.member + "/" + section + "/" + l.unit] = [String(l.upperBound + 0.5), l.lowerExcluded ? String(l.lowerBound) : String(l.lowerBound - 0.5)]
        }
        func bytes(_ l: Limit<Int64>, _ section: String) {
            var v = [#""\#(String(repeating: "a", count: Int(l.upperBound) + 1))""#]
            if l.lowerBound > 0 { v.append(#""""#) }
            out[l.member + "/" + section + "/" + l.unit] = v
        }
        func entries(_ l: Limit<Int64>, _ section: String, item: String) {
            out[l.member + "/" + section + "/" + l.unit] = ["[" + Array(repeating: item, count: Int(l.upperBound) + 1).joined(separator: ",") + "]"]
            if l.lowerBound > 0 { out[l.member + "/" + section + "/" + l.unit]!.append("[]") }
        }
        bytes(Limits.idBytes, "5"); bytes(Limits.clientBytes, "5.1"); ints(Limits.maxVersion, "5.1")
        ints(Limits.maxTokens, "5.5"); doubles(Limits.temperature, "5.5"); ints(Limits.topK, "5.5"); doubles(Limits.topP, "5.5")
        doubles(Limits.minP, "5.5"); doubles(Limits.repeatPenalty, "5.5"); ints(Limits.repeatWindow, "5.5"); ints(Limits.seed, "5.5")
        entries(Limits.stopCount, "5.5", item: #""x""#); bytes(Limits.stopBytes, "5.5")
        out["stop/5.5/bytes"] = out["stop/5.5/bytes"]!.map { "[\($0)]" }
        ints(Limits.deadlineMS, "5.5"); bytes(Limits.sessionBytes, "5.5")
        out["ids/5.6/"] = ["[\(Limits.tokenID.upperBound + 1)]", "[-1]"]
        ints(Limits.suggestN, "5.8"); doubles(Limits.suggestMinProb, "5.8"); ints(Limits.suggestMaxTokens, "5.8"); ints(Limits.suggestMaxWords, "5.8")
        entries(Limits.chooseOptions, "5.9", item: #""a""#)
        bytes(Limits.intentBytes, "5.10"); entries(Limits.parseExamples, "5.10", item: #"["on",{"device":"light"}]"#)
        ints(Limits.parseMaxTokens, "5.10"); doubles(Limits.minMatchScore, "5.10"); doubles(Limits.confirmBelow, "5.10")
        return out
    }()

    func testEveryLimitHasOutOfRangeValues() {
        for e in Limits.all { XCTAssertFalse(outside(e).isEmpty, "§\(e.section) `\(e.member)`: no out-of-range values to send") }
    }
}
