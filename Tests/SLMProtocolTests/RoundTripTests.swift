import XCTest
@testable import SLMProtocol

final class RoundTripTests: XCTestCase {
    /// Encodes to a frame's wire bytes, decodes them with a fresh FrameDecoder, returns the frame.
    private func throughTheWire(_ frame: Frame) throws -> Frame {
        var d = FrameDecoder()
        d.feed(frame.encode())
        let decoded = try XCTUnwrap(try d.next())
        XCTAssertNil(try d.next())
        return decoded
    }

    func testEveryRequestType() throws {
        let requests: [Request] = [
            Request(id: 1, .hello(HelloRequest(client: "slmctl 0.1", maxVersion: 1))),
            Request(id: "h", .hello(HelloRequest())),
            Request(id: 2, .info),
            Request(id: 3, .complete(CompleteRequest(prompt: "Once\n\"upon\"\t\u{1}é😀", parseSpecial: true,
                options: GenerationOptions(maxTokens: 100, temperature: 0.8, topK: 40, topP: 0.9, minP: 0.05,
                                           repeatPenalty: 1.1, repeatWindow: 64, seed: 9_007_199_254_740_991,
                                           stop: ["\n", "</s>"], deadlineMS: 30_000, stream: false)))),
            Request(id: "chat-1", .chat(ChatRequest(messages: [
                .init(role: .system, content: "Be brief."), .init(role: .user, content: "Hi"),
                .init(role: .assistant, content: "Hello!"), .init(role: .user, content: "Bye"),
            ], options: GenerationOptions(temperature: 0)))),
            Request(id: 5, .tokenize(TokenizeRequest(text: "Hello <|im_end|>", parseSpecial: true))),
            Request(id: 6, .detokenize(DetokenizeRequest(ids: [0, 1, 9906, 2_147_483_647]))),
            Request(id: 7, .cancel(CancelRequest(target: "chat-1"))),
            Request(id: 8, .cancel(CancelRequest(target: 3))),
            Request(id: 9, .status),
            Request(id: 10, .stats),
            Request(id: .int(Int64.min), .ping),
            Request(id: 17, .intents),
            Request(id: 11, .suggest(SuggestRequest(prefix: "Turn on the li", n: 3, maxTokens: 6, maxWords: 2,
                                                    stopAtSentence: false, session: "ui", deadlineMS: 500))),
            Request(id: 11, .suggest(SuggestRequest(prefix: "", n: 5, mode: .word, minProb: 1e-4, context: "To: Ann\nSubject:"))),
            Request(id: 12, .choose(ChooseRequest(prompt: "Sentiment:", options: [" positive", " negative"], normalize: true))),
            Request(id: 13, .parse(ParseRequest(utterance: "lights off", schema: #"{"type":"object","properties":{"a":{"enum":["x"]}}}"#,
                                                instruction: "JSON only", examples: [.init(utterance: "on", output: ["a": "x"])],
                                                maxTokens: 64, temperature: 0, deadlineMS: 1000))),
            Request(id: 14, .parse(ParseRequest(utterance: "kill the lights", intent: "smart_home", returnTokens: true))),
            Request(id: 16, .parse(ParseRequest(utterance: "lamp on", intent: "smart_home", minMatchScore: 0.25, confirmBelow: 0.5,
                                                synonyms: ["device": ["light": ["lamp", "bulb"]]]))),
            Request(id: 15, .complete(CompleteRequest(prompt: "JSON:", options: {
                var o = GenerationOptions(maxTokens: 9)
                o.schema = #"{"type":"boolean"}"#
                return o
            }()))),
        ]
        XCTAssertEqual(Set(requests.map(\.body.op)), Set(Op.allCases), "every op covered")
        for r in requests {
            XCTAssertEqual(try Request(frame: throughTheWire(r.frame())), r)
        }
    }

    func testEveryReplyType() throws {
        let usage = Usage(promptTokens: 12, generatedTokens: 34, ttftMS: 41.5, tokensPerSecond: 23.25, totalMS: 1503)
        let info = ServerInfo(protocolVersion: 1, serverVersion: "0.1.0",
                              model: ["name": "qwen2.5-0.5b-instruct", "context_length": 32768, "has_chat_template": true],
                              limits: ["max_frame_bytes": 1_048_576, "max_tokens": 2048, "max_concurrent": 2])
        let replies: [Reply] = [
            Reply(id: 1, .hello(info)),
            Reply(id: 2, .info(info)),
            Reply(id: 3, .complete(GenerationResult(text: "a story", finishReason: .length, usage: usage))),
            Reply(id: "s", .complete(GenerationResult(text: nil, finishReason: .stop, usage: usage))),
            Reply(id: 4, .chat(GenerationResult(text: nil, finishReason: .error, usage: usage, message: "engine failed"))),
            Reply(id: 4, .chat(GenerationResult(text: "x", finishReason: FinishReason(rawValue: "superseded"), usage: usage))),
            Reply(id: 5, .tokenize(ids: [9906, 0, 151_643])),
            Reply(id: 6, .detokenize(text: "Hello ✓")),
            Reply(id: 7, .cancel(cancelled: true)),
            Reply(id: 8, .cancel(cancelled: false)),
            Reply(id: 9, .status(["state": "ready", "in_flight": 1, "queued": 0, "uptime_s": 12.5, "model": ["name": "m"]])),
            Reply(id: 10, .stats(Stats(counters: ["requests_total": 10, "tokens_generated_total": 12345],
                                       gauges: ["queue_depth": 0, "memory_bytes": 5.5e8],
                                       percentiles: ["ttft_ms": ["p50": 40, "p90": 80.5, "p99": 120.25]]))),
            Reply(id: 11, .ping),
            Reply(id: 12, .suggest(SuggestResult(suggestions: [.init(text: "ghts", prob: 0.25, logprob: -1.386, tokens: 2)],
                                                 healed: true, promptTokens: 7, reusedTokens: 6, ms: 12.5))),
            Reply(id: 13, .choose(ChooseResult(best: " b", bestIndex: 1,
                                               options: [.init(text: " a", logprob: -3, normalizedLogprob: -3, tokens: 1),
                                                         .init(text: " b", logprob: -1, normalizedLogprob: -0.5, tokens: 2)],
                                               ms: 3))),
            Reply(id: 14, .parse(ParseResult(result: ["action": "turn_off", "value": nil], text: #"{"action":"turn_off","value":null}"#,
                                             complete: true, generatedTokens: 9, ms: 80.5))),
            Reply(id: 15, .parse(ParseResult(result: ["a": "x"], text: #"{"a":"x"}"#, complete: true, generatedTokens: 5, ms: 9,
                                             confidence: ["a": 0.75, "b": 1], intent: "smart_home", tokens: [1, 2, 49151],
                                             matched: true, matchScore: 0.5, needsConfirmation: ["a"]))),
            Reply(id: 16, .parse(ParseResult(result: nil, text: #"{"value":null}"#, complete: true, generatedTokens: 5, ms: 9,
                                             matched: false, matchScore: 0.75,
                                             violations: [.init(field: "value", wanted: 180, reason: "above the maximum 100")]))),
            Reply(id: 17, .intents([IntentInfo(name: "smart_home", description: "Lights and heating.",
                                               schema: #"{"type":"object","properties":{"a":{"enum":["x"]}}}"#),
                                    IntentInfo(name: "bare", schema: #"{"type":"boolean"}"#)])),
            Reply(id: 18, .intents([])),
        ]
        XCTAssertEqual(Set(replies.map(\.body.op)), Set(Op.allCases), "every op covered")
        for r in replies {
            let frame = try throughTheWire(r.frame())
            XCTAssertEqual(frame.type, .reply)
            XCTAssertEqual(try ServerMessage(frame: frame), .reply(r))
        }
    }

    func testEventsAndErrors() throws {
        let events = [Event(id: 3, text: "Hel", tokenCount: 1), Event(id: "x", text: "", tokenCount: 2),
                      Event(id: 3, text: "日本 😀\n", tokenCount: 99)]
        for e in events {
            XCTAssertEqual(try ServerMessage(frame: throughTheWire(e.frame())), .event(e))
        }
        for code in ErrorCode.all {
            for id: RequestID? in [nil, 5, "q"] {
                let e = ErrorMessage(id: id, code: code, message: "detail for \(code.name)")
                let decoded = try ServerMessage(frame: throughTheWire(e.frame()))
                XCTAssertEqual(decoded, .error(e))
                XCTAssertEqual(decoded.id, id)
            }
        }
        XCTAssertEqual(String(decoding: ErrorMessage(id: nil, code: .frameTooLarge, message: "m").payload(), as: UTF8.self),
                       #"{"code":"frame_too_large","code_num":3,"id":null,"message":"m"}"#)
    }

    func testUnknownErrorCodeFromANewerServerIsKept() throws {
        let payload = Array(#"{"id":1,"code":"rate_limited","code_num":99,"message":"slow down"}"#.utf8)
        let e = try ErrorMessage(payload: payload)
        XCTAssertEqual(e.code.number, 99)
        XCTAssertEqual(e.code.name, "rate_limited")
        XCTAssertFalse(e.code.isFatal)
    }

    func testUnknownEventKindDecodes() throws {
        let e = try Event(payload: Array(#"{"id":1,"event":"progress","percent":50}"#.utf8))
        XCTAssertEqual(e.kind.rawValue, "progress")
    }

    func testServerMessageRejectsRequestFrames() {
        assertProtocolError(.unknownType) { () throws(ProtocolError) in try ServerMessage(frame: Request(id: 1, .ping).frame()) }
    }

    func testJSONValueSerialisation() throws {
        let v: JSONValue = ["b": [1, 2.5, "x\u{0}\"\\/"], "a": nil, "c": ["z": true, "y": false], "é": -0.25]
        let text = String(decoding: v.serialized(), as: UTF8.self)
        XCTAssertEqual(text, #"{"a":null,"b":[1,2.5,"x\u0000\"\\/"],"c":{"y":false,"z":true},"é":-0.25}"#)
        XCTAssertEqual(try JSONValue.parse(v.serialized()), v)
        XCTAssertEqual(try JSONValue.parse(Array("9223372036854775807".utf8)), .int(.max))
        XCTAssertEqual(String(decoding: JSONValue.double(.nan).serialized(), as: UTF8.self), "null")
    }

    func testErrorCodeTableIsAppendOnlyShape() {
        // Numbers are 1...n with no gaps, names unique; the pinned prefix never changes.
        XCTAssertEqual(ErrorCode.all.map(\.number), Array(1...ErrorCode.all.count))
        XCTAssertEqual(Set(ErrorCode.all.map(\.name)).count, ErrorCode.all.count)
        XCTAssertEqual(ErrorCode.all.map(\.name), [
            "malformed_frame", "unsupported_version", "frame_too_large", "bad_utf8", "bad_json", "unknown_type",
            "bad_field", "busy", "over_memory_budget", "cancelled", "deadline_exceeded", "internal", "not_found",
            "duplicate_id", "context_overflow", "permission_denied", "shutting_down", "unsupported",
            "reply_too_large", "evicted",
        ])
        XCTAssertEqual(ErrorCode.all.filter(\.isFatal).map(\.name), ["malformed_frame", "unsupported_version", "frame_too_large", "evicted"])
        XCTAssertEqual(ErrorCode(name: "busy"), .busy)
        XCTAssertEqual(ErrorCode(number: 7, name: "ignored"), .badField)
    }
}
