import XCTest
@testable import SLMProtocol

final class RequestDecodingTests: XCTestCase {
    func testMinimalComplete() throws {
        let r = try request(#"{"id": 1, "op": "complete", "prompt": "Hi"}"#)
        XCTAssertEqual(r, Request(id: 1, .complete(CompleteRequest(prompt: "Hi"))))
        guard case .complete(let c) = r.body else { return XCTFail() }
        XCTAssertTrue(c.options.stream, "stream defaults to true")
        XCTAssertFalse(c.parseSpecial, "parse_special defaults to false")
        XCTAssertNil(c.options.maxTokens)
    }

    func testAllCompleteOptions() throws {
        let r = try request("""
            {"id":"r1","op":"complete","prompt":"p","parse_special":true,"max_tokens":32,"temperature":0.7,
             "top_k":40,"top_p":0.95,"min_p":0.05,"repeat_penalty":1.1,"repeat_window":64,"seed":42,
             "stop":["\\n\\n","END"],"deadline_ms":5000,"stream":false}
            """)
        let expected = CompleteRequest(prompt: "p", parseSpecial: true, options: GenerationOptions(
            maxTokens: 32, temperature: 0.7, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1,
            repeatWindow: 64, seed: 42, stop: ["\n\n", "END"], deadlineMS: 5000, stream: false))
        XCTAssertEqual(r, Request(id: "r1", .complete(expected)))
    }

    func testIdsKeepTheirJSONType() throws {
        XCTAssertEqual(try request(#"{"id": 42, "op": "ping"}"#).id, .int(42))
        XCTAssertEqual(try request(#"{"id": "42", "op": "ping"}"#).id, .string("42"))
        XCTAssertEqual(try request(#"{"id": -9007199254740993, "op": "ping"}"#).id, .int(-9007199254740993))
        // Echoed back exactly in the reply bytes.
        let reply = Reply(id: .string("42"), .ping).payload()
        XCTAssertEqual(String(decoding: reply, as: UTF8.self), #"{"id":"42","op":"ping"}"#)
        XCTAssertEqual(String(decoding: Reply(id: 42, .ping).payload(), as: UTF8.self), #"{"id":42,"op":"ping"}"#)
    }

    func testBadIds() {
        for json in [#"{"op":"ping"}"#, #"{"id":null,"op":"ping"}"#, #"{"id":1.5,"op":"ping"}"#,
                     #"{"id":true,"op":"ping"}"#, #"{"id":"","op":"ping"}"#, #"{"id":[1],"op":"ping"}"#,
                     "{\"id\":\"\(String(repeating: "x", count: 129))\",\"op\":\"ping\"}"] {
            let e = assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }
            XCTAssertEqual(e?.field, "id", json)
            XCTAssertNil(e?.requestID, json)
        }
    }

    func testUnknownOpEchoesId() {
        let e = assertProtocolError(.unknownType) { () throws(ProtocolError) in
            try request(#"{"id":"x7","op":"translate","intent":"timer","utterance":"in 5 min"}"#)
        }
        XCTAssertEqual(e?.requestID, "x7")
        XCTAssertEqual(e?.errorMessage.id, "x7")
        XCTAssertEqual(e?.isFatal, false)
    }

    func testParseNamesAnIntentOrCarriesASchema() throws {
        let byName = try request(#"{"id":1,"op":"parse","intent":"smart_home","utterance":"lights off","tokens":true}"#)
        XCTAssertEqual(byName.body, .parse(ParseRequest(utterance: "lights off", intent: "smart_home", returnTokens: true)))
        let point = try request(#"{"id":1,"op":"parse","intent":"smart_home","utterance":"x","min_match_score":0,"confirm_below":1}"#)
        XCTAssertEqual(point.body, .parse(ParseRequest(utterance: "x", intent: "smart_home", minMatchScore: 0, confirmBelow: 1)))
        for (json, field) in [(#"{"id":2,"op":"parse","utterance":"x"}"#, "intent"),
                              (#"{"id":2,"op":"parse","utterance":"x","intent":"a","schema":"{}"}"#, "schema"),
                              (#"{"id":2,"op":"parse","utterance":"x","intent":7}"#, "intent"),
                              (#"{"id":2,"op":"parse","utterance":"x","intent":"a","tokens":"yes"}"#, "tokens"),
                              (#"{"id":2,"op":"parse","utterance":"x","intent":"a","min_match_score":1.5}"#, "min_match_score"),
                              (#"{"id":2,"op":"parse","utterance":"x","intent":"a","confirm_below":-1}"#, "confirm_below"),
                              (#"{"id":2,"op":"parse","utterance":"x","intent":"a","synonyms":["lamp"]}"#, "synonyms")] {
            let e = assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }
            XCTAssertEqual(e?.field, field, json)
            XCTAssertEqual(e?.requestID, 2, json)
        }
    }

    func testMissingOrMistypedOp() {
        for json in [#"{"id":3}"#, #"{"id":3,"op":7}"#] {
            let e = assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }
            XCTAssertEqual(e?.field, "op")
            XCTAssertEqual(e?.requestID, 3)
        }
    }

    func testUnknownFieldsAreIgnored() throws {
        let r = try request(#"{"id":1,"op":"complete","prompt":"x","future_field":"s1","future":{"a":[1,2]},"max_tokens":4}"#)
        XCTAssertEqual(r, Request(id: 1, .complete(CompleteRequest(prompt: "x", options: GenerationOptions(maxTokens: 4)))))
        XCTAssertEqual(try request(#"{"id":1,"op":"ping","extra":true}"#), Request(id: 1, .ping))
    }

    func testSessionAndTheDeviceUIOps() throws {
        var o = GenerationOptions(maxTokens: 4)
        o.session = "kbd"
        XCTAssertEqual(try request(#"{"id":1,"op":"complete","prompt":"x","session":"kbd","max_tokens":4}"#),
                       Request(id: 1, .complete(CompleteRequest(prompt: "x", options: o))))
        XCTAssertEqual(try request(#"{"id":2,"op":"suggest","prefix":"Turn on the li","n":3,"session":"ui"}"#),
                       Request(id: 2, .suggest(SuggestRequest(prefix: "Turn on the li", n: 3, session: "ui"))))
        XCTAssertEqual(try request(#"{"id":3,"op":"choose","prompt":"p","options":[" a"," b"],"normalize":true}"#),
                       Request(id: 3, .choose(ChooseRequest(prompt: "p", options: [" a", " b"], normalize: true))))
        XCTAssertEqual(try request(#"{"id":2,"op":"suggest","prefix":"","mode":"word","min_prob":0.001,"context":"Subject:"}"#),
                       Request(id: 2, .suggest(SuggestRequest(prefix: "", mode: .word, minProb: 0.001, context: "Subject:"))))
        XCTAssertEqual(try request(#"{"id":2,"op":"suggest","prefix":"x","mode":"phrase","min_prob":0}"#),
                       Request(id: 2, .suggest(SuggestRequest(prefix: "x", minProb: 0))))
        for (json, field) in [(#"{"id":4,"op":"suggest","prefix":"x","mode":"sentence"}"#, "mode"),
                              (#"{"id":4,"op":"suggest","prefix":"x","mode":1}"#, "mode"),
                              (#"{"id":4,"op":"suggest","prefix":"x","min_prob":1.5}"#, "min_prob"),
                              (#"{"id":4,"op":"suggest","prefix":"x","min_prob":-0.1}"#, "min_prob"),
                              (#"{"id":4,"op":"suggest","prefix":"x","min_prob":"low"}"#, "min_prob"),
                              (#"{"id":4,"op":"suggest","prefix":"x","context":["a"]}"#, "context")] {
            XCTAssertEqual(assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }?.field, field, json)
        }
        for bad in [#"{"id":4,"op":"suggest","prefix":"x","n":9}"#, #"{"id":4,"op":"suggest"}"#,
                    #"{"id":4,"op":"choose","prompt":"p","options":[]}"#, #"{"id":4,"op":"choose","prompt":"p","options":[""]}"#,
                    #"{"id":4,"op":"choose","prompt":"p","options":[1]}"#, #"{"id":4,"op":"complete","prompt":"x","session":5}"#] {
            _ = assertProtocolError(.badField) { () throws(ProtocolError) in try request(bad) }
        }
    }

    func testNullMeansAbsent() throws {
        let r = try request(#"{"id":1,"op":"complete","prompt":"x","max_tokens":null,"stop":null}"#)
        XCTAssertEqual(r, Request(id: 1, .complete(CompleteRequest(prompt: "x"))))
    }

    func testBadUTF8IsCheckedBeforeJSON() {
        var bytes = Array(#"{"id":1,"op":"complete","prompt":""#.utf8)
        bytes += [0xC3, 0x28]  // invalid continuation byte
        bytes += Array(#""}"#.utf8)
        assertProtocolError(.badUTF8) { () throws(ProtocolError) in try Request(payload: bytes) }
        assertProtocolError(.badUTF8) { () throws(ProtocolError) in try Request(payload: [0xFF, 0xFE]) }
        // Overlong encoding and a lone surrogate encoded in UTF-8 are invalid too.
        assertProtocolError(.badUTF8) { () throws(ProtocolError) in try Request(payload: [0x22, 0xC0, 0xAF, 0x22]) }
        assertProtocolError(.badUTF8) { () throws(ProtocolError) in try Request(payload: [0x22, 0xED, 0xA0, 0x80, 0x22]) }
    }

    func testBadJSON() {
        for json in ["", "{", "[1,2]", "\"str\"", "42", "{'id':1}", "nul", "{\"id\":1}{\"id\":2}"] {
            let e = assertProtocolError(.badJSON) { () throws(ProtocolError) in try request(json) }
            XCTAssertNil(e?.requestID, json)
        }
    }

    /// A lone UTF-16 surrogate escape (a keyboard buffer cut mid-emoji) is `bad_field` naming
    /// the top-level member that holds it, with the id whenever the id is readable (§10.3).
    func testALoneSurrogateNamesItsMemberAndKeepsTheID() throws {
        func refused(_ json: String) -> ProtocolError? {
            assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }
        }
        var e = refused(#"{"id":5,"op":"suggest","prefix":"call mom \ud83d"}"#)
        XCTAssertEqual(e?.requestID, 5)
        XCTAssertEqual(e?.field, "prefix")
        XCTAssertTrue(e?.message.contains(#"\ud83d"#) ?? false, e?.message ?? "")
        // A low half alone, upper-case hex, deep inside a member, before the id: still named.
        e = refused(#"{"op":"chat","messages":[{"role":"user","content":"x\uDE00y"}],"id":"k"}"#)
        XCTAssertEqual(e?.requestID, "k")
        XCTAssertEqual(e?.field, "messages")
        // Two halves in the wrong order are two lone surrogates; the first is named.
        e = refused(#"{"id":6,"op":"tokenize","text":"\ude00\ud83d"}"#)
        XCTAssertEqual(e?.field, "text")
        // In a member's name.
        e = refused(#"{"id":7,"op":"ping","a\ud83d":1}"#)
        XCTAssertEqual(e?.requestID, 7)
        XCTAssertEqual(e?.field, #"a\ud83d"#)
        // In the id itself: no id can be read.
        e = refused(#"{"id":"a\ud83d","op":"ping"}"#)
        XCTAssertNil(e?.requestID)
        XCTAssertEqual(e?.field, "id")
        // A pair is one character; an escaped backslash before "u" is no escape at all.
        XCTAssertEqual(try request(#"{"id":8,"op":"tokenize","text":"\ud83d\ude00"}"#),
                       Request(id: 8, .tokenize(TokenizeRequest(text: "😀"))))
        XCTAssertEqual(try request(#"{"id":9,"op":"tokenize","text":"\\ud83d"}"#),
                       Request(id: 9, .tokenize(TokenizeRequest(text: #"\ud83d"#))))
        // Broken otherwise too: still bad_json without an id.
        for json in [#"{"id":1,"op":"ping","x":"\ud83d}"#, #"["\ud83d"]"#, #""\ud83d""#, #"{"id":1,"x":"\ud83d",}}"#] {
            let bad = assertProtocolError(.badJSON) { () throws(ProtocolError) in try request(json) }
            XCTAssertNil(bad?.requestID, json)
        }
    }

    /// Known leniency of FoundationEssentials' JSONDecoder: a trailing comma is accepted.
    /// Documented in docs/PROTOCOL.md so clients never rely on it; pinned here so a change
    /// in the toolchain is noticed.
    func testTrailingCommaLeniencyIsPinned() throws {
        XCTAssertEqual(try request(#"{"id":1,"op":"ping",}"#), Request(id: 1, .ping))
    }

    func testDeepNestingIsBadJSONNotACrash() {
        let deep = "{\"id\":1,\"op\":\"ping\",\"x\":" + String(repeating: "[", count: 100_000)
            + String(repeating: "]", count: 100_000) + "}"
        assertProtocolError(.badJSON) { () throws(ProtocolError) in try request(deep) }
    }

    /// Every field of `complete` with a wrong JSON type or range → bad_field naming it.
    func testWrongTypesForEveryCompleteField() {
        let cases: [(String, String)] = [
            (#""prompt":5"#, "prompt"),
            (#""prompt":null"#, "prompt"),
            (#""parse_special":"yes""#, "parse_special"),
            (#""max_tokens":"12""#, "max_tokens"),
            (#""max_tokens":0"#, "max_tokens"),
            (#""max_tokens":-5"#, "max_tokens"),
            (#""max_tokens":1.5"#, "max_tokens"),
            (#""max_tokens":99999999999"#, "max_tokens"),
            (#""temperature":true"#, "temperature"),
            (#""temperature":-0.1"#, "temperature"),
            (#""temperature":1e9"#, "temperature"),
            (#""temperature":"0.7""#, "temperature"),
            (#""top_k":0.5"#, "top_k"),
            (#""top_k":-1"#, "top_k"),
            (#""top_p":1.5"#, "top_p"),
            (#""top_p":[]"#, "top_p"),
            (#""min_p":-1"#, "min_p"),
            (#""min_p":{}"#, "min_p"),
            (#""repeat_penalty":"1.1""#, "repeat_penalty"),
            (#""repeat_penalty":-1"#, "repeat_penalty"),
            (#""repeat_window":false"#, "repeat_window"),
            (#""repeat_window":-1"#, "repeat_window"),
            (#""seed":-1"#, "seed"),
            (#""seed":"42""#, "seed"),
            (#""seed":18446744073709551615"#, "seed"),
            (#""stop":3"#, "stop"),
            (#""stop":"END""#, "stop"),
            (#""stop":[1]"#, "stop[0]"),
            (#""stop":["a",""]"#, "stop[1]"),
            ("\"stop\":[\"\(String(repeating: "y", count: 65))\"]", "stop[0]"),
            (#""stop":["1","2","3","4","5","6","7","8","9"]"#, "stop"),
            (#""deadline_ms":0"#, "deadline_ms"),
            (#""deadline_ms":"soon""#, "deadline_ms"),
            (#""deadline_ms":100000000000"#, "deadline_ms"),
            (#""stream":"false""#, "stream"),
            (#""stream":0"#, "stream"),
        ]
        for (member, field) in cases {
            var json = #"{"id":9,"op":"complete","prompt":"x","#
            if member.hasPrefix("\"prompt\"") { json = #"{"id":9,"op":"complete","# }
            json += member + "}"
            let e = assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }
            XCTAssertEqual(e?.field, field, json)
            XCTAssertEqual(e?.requestID, 9, json)
            XCTAssertTrue(e?.message.hasPrefix("field '\(field)': expected ") ?? false, e?.message ?? "")
        }
        let missing = assertProtocolError(.badField) { () throws(ProtocolError) in try request(#"{"id":9,"op":"complete"}"#) }
        XCTAssertEqual(missing?.message, "field 'prompt': expected a string (missing)")
        let mt = assertProtocolError(.badField) { () throws(ProtocolError) in
            try request(#"{"id":9,"op":"complete","prompt":"x","max_tokens":"12"}"#)
        }
        XCTAssertEqual(mt?.message, "field 'max_tokens': expected an integer in 1...1048576, got a string")
    }

    func testWrongTypesForChat() {
        let cases: [(String, String)] = [
            (#""messages":"hi""#, "messages"),
            (#""messages":{}"#, "messages"),
            (#""messages":[]"#, "messages"),
            (#""messages":[3]"#, "messages[0]"),
            (#""messages":[{"role":"user","content":"a"},{"content":"b"}]"#, "messages[1].role"),
            (#""messages":[{"role":"robot","content":"a"}]"#, "messages[0].role"),
            (#""messages":[{"role":"user","content":["a"]}]"#, "messages[0].content"),
            (#""messages":[{"role":"user","content":"a"}],"temperature":"hot""#, "temperature"),
        ]
        for (member, field) in cases {
            let json = #"{"id":"c","op":"chat","# + member + "}"
            let e = assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }
            XCTAssertEqual(e?.field, field, json)
            XCTAssertEqual(e?.requestID, "c", json)
        }
        let missing = assertProtocolError(.badField) { () throws(ProtocolError) in try request(#"{"id":"c","op":"chat"}"#) }
        XCTAssertEqual(missing?.field, "messages")
    }

    func testWrongTypesForOtherOps() {
        let cases: [(String, String)] = [
            (#"{"id":1,"op":"tokenize"}"#, "text"),
            (#"{"id":1,"op":"tokenize","text":1}"#, "text"),
            (#"{"id":1,"op":"tokenize","text":"a","parse_special":1}"#, "parse_special"),
            (#"{"id":1,"op":"detokenize"}"#, "ids"),
            (#"{"id":1,"op":"detokenize","ids":"1 2"}"#, "ids"),
            (#"{"id":1,"op":"detokenize","ids":[1,-2]}"#, "ids[1]"),
            (#"{"id":1,"op":"detokenize","ids":[1,"2"]}"#, "ids[1]"),
            (#"{"id":1,"op":"detokenize","ids":[4294967296]}"#, "ids[0]"),
            (#"{"id":1,"op":"cancel"}"#, "target"),
            (#"{"id":1,"op":"cancel","target":1.5}"#, "target"),
            (#"{"id":1,"op":"hello","max_version":0}"#, "max_version"),
            (#"{"id":1,"op":"hello","client":7}"#, "client"),
        ]
        for (json, field) in cases {
            let e = assertProtocolError(.badField) { () throws(ProtocolError) in try request(json) }
            XCTAssertEqual(e?.field, field, json)
            XCTAssertEqual(e?.requestID, 1, json)
        }
    }

    func testRequestFrameTypeIsChecked() {
        assertProtocolError(.unknownType) { () throws(ProtocolError) in try Request(frame: Reply(id: 1, .ping).frame()) }
    }
}

/// Bad requests whose framing is intact leave the stream usable: the decoder yields every
/// frame, each bad one maps to a non-fatal error with the right id, and a ping after
/// them still decodes (what the server relies on to keep the connection).
final class GarbageThenPingTests: XCTestCase {
    func testBadRequestsThenPing() throws {
        let payloads: [[UInt8]] = [
            Array("not json".utf8),
            [0xFF, 0x00, 0xFE],
            Array(#"{"id":1,"op":"launch_missiles"}"#.utf8),
            Array(#"{"id":2,"op":"complete","prompt":"x","max_tokens":"12"}"#.utf8),
            Array(#"[1,2,3]"#.utf8),
            [],
            Array(#"{"id":3,"op":"ping"}"#.utf8),
        ]
        var stream: [UInt8] = []
        for p in payloads { Frame(type: .request, payload: p).encode(into: &stream) }
        var d = FrameDecoder()
        for byte in stream { d.feed(CollectionOfOne(byte)) }
        var results: [Result<Request, ProtocolError>] = []
        while let frame = try d.next() {
            do throws(ProtocolError) { results.append(.success(try Request(frame: frame))) }
            catch { results.append(.failure(error)) }
        }
        let outcomes = results.map { r -> String in
            switch r {
            case .success(let req): return "ok \(req.id)"
            case .failure(let e): return "\(e.code.name) \(e.requestID.map { "\($0)" } ?? "null") fatal=\(e.isFatal)"
            }
        }
        XCTAssertEqual(outcomes, [
            "bad_json null fatal=false", "bad_utf8 null fatal=false", "unknown_type 1 fatal=false",
            "bad_field 2 fatal=false", "bad_json null fatal=false", "bad_json null fatal=false", "ok 3",
        ])
    }

    func testHelloNegotiation() throws {
        XCTAssertEqual(HelloRequest().negotiatedVersion, 1)
        XCTAssertEqual(HelloRequest(maxVersion: 7).negotiatedVersion, 1)
        guard case .hello(let h) = try request(#"{"id":1,"op":"hello","max_version":3,"client":"t"}"#).body else {
            return XCTFail()
        }
        XCTAssertEqual(h, HelloRequest(client: "t", maxVersion: 3))
    }
}
