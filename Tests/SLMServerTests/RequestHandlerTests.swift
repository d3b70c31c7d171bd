@testable import SLMEngine
import SLMModel
import SLMProtocol
@testable import SLMServer
import XCTest

/// Request handling in process, against `FakeEngine`: the frames the handler produces for
/// scripted engine behaviour (streams, refusals, requests that never end until cancelled,
/// job outcomes), without a socket or a model. The end-to-end tests (Daemon*Tests) check
/// the same paths against the real daemon; these pin the handler's own rules.
final class RequestHandlerTests: XCTestCase {
    func error(_ m: ServerMessage, file: StaticString = #filePath, line: UInt = #line) -> ErrorMessage? {
        guard case .error(let e) = m else { XCTFail("not an error: \(m)", file: file, line: line); return nil }
        return e
    }

    func reply(_ m: ServerMessage, file: StaticString = #filePath, line: UInt = #line) -> Reply? {
        guard case .reply(let r) = m else { XCTFail("not a reply: \(m)", file: file, line: line); return nil }
        return r
    }

    func testAStreamIsEventsUnderItsIDThenTheFinalReply() throws {
        let h = try HandlerHarness()
        h.fake.script(.stream(["Hel", "lo", "!"], finish: .stop))
        h.send(#"{"id":41,"op":"complete","prompt":"hello hello","max_tokens":5}"#)
        h.waitForSubmissions(1)
        // The handler tokenized the prompt with the model's tokenizer.
        guard case .generation(let request, _) = h.fake.submissions[0].kind else { return XCTFail("not a generation") }
        XCTAssertEqual(request.promptIDs, h.fake.modelFacts.tokenizer.encode("hello hello", parseSpecial: false))
        XCTAssertEqual(request.options.maxTokens, 5)
        XCTAssertEqual(request.owner, UInt32.max, "an unknown peer is nobody's")
        XCTAssertTrue(try h.take().isEmpty, "nothing before the engine speaks")

        h.fake.deliver()
        let frames = try h.take(4)
        var counts: [Int] = []
        for f in frames.prefix(3) {
            guard case .event(let e) = f else { return XCTFail("not an event: \(f)") }
            XCTAssertEqual(e.id, 41)
            counts.append(e.tokenCount)
        }
        XCTAssertEqual(counts, [1, 2, 3], "token counts are cumulative")
        guard let r = reply(frames[3]), case .complete(let g) = r.body else { return XCTFail("not a complete reply") }
        XCTAssertEqual(r.id, 41)
        XCTAssertEqual(g.finishReason, .stop)
        XCTAssertNil(g.text, "a streamed reply does not repeat the text")
        XCTAssertEqual(g.usage.generatedTokens, 3)
        XCTAssertEqual(g.usage.promptTokens, request.promptIDs.count)
        // The id is free again.
        h.send(#"{"id":41,"op":"ping"}"#)
        XCTAssertEqual(try h.take(1).first?.id, 41)
    }

    func testAnIDInFlightIsADuplicateForEveryOpAndCancelEndsItAfterTheCancelReply() throws {
        let h = try HandlerHarness()
        h.fake.script(.hang)
        h.send(#"{"id":7,"op":"complete","prompt":"hello"}"#)
        h.waitForSubmissions(1)
        for op in [#""op":"ping""#, #""op":"status""#, #""op":"tokenize","text":"x""#, #""op":"complete","prompt":"x""#,
                   #""op":"suggest","prefix":"he""#] {
            h.send("{\"id\":7,\(op)}")
            let frames = try h.take(1)
            guard let e = error(frames[0]) else { continue }
            XCTAssertEqual(e.code, .duplicateID, op)
            XCTAssertEqual(e.id, 7, op)
        }
        XCTAssertEqual(h.fake.submissions.count, 1, "a duplicate never reaches the engine")

        h.send(#"{"id":8,"op":"cancel","target":7}"#)
        let ack = try h.take(1)
        guard let r = reply(ack[0]), case .cancel(let cancelled) = r.body else { return XCTFail("not a cancel reply") }
        XCTAssertEqual(r.id, 8)
        XCTAssertTrue(cancelled)
        // The cancelled request ends once the engine gets to it: after the cancel reply, with
        // an error (nothing was generated), under its own id.
        h.fake.deliver()
        let end = try h.take(1)
        XCTAssertEqual(error(end[0])?.code, .cancelled)
        XCTAssertEqual(end[0].id, 7)
        // Cancelling it again finds nothing.
        h.send(#"{"id":9,"op":"cancel","target":7}"#)
        guard let again = reply(try h.take(1)[0]), case .cancel(let twice) = again.body else { return XCTFail("not a cancel reply") }
        XCTAssertFalse(twice)
    }

    func testEngineRefusalsBecomeTheirErrorCodesWithTheID() throws {
        let h = try HandlerHarness()
        let cases: [(EngineError.Code, ErrorCode)] = [
            (.busy, .busy), (.shuttingDown, .shuttingDown), (.overMemoryBudget, .overMemoryBudget),
            (.contextOverflow, .contextOverflow), (.badRequest, .badField),
        ]
        for (i, (engineCode, wire)) in cases.enumerated() {
            h.fake.script(.refuse(EngineError(engineCode, "refused \(i)")))
            h.send("{\"id\":\(100 + i),\"op\":\"complete\",\"prompt\":\"hello\"}")
            let frames = try h.take(1)
            guard let e = error(frames[0]) else { continue }
            XCTAssertEqual(e.code, wire, "\(engineCode)")
            XCTAssertEqual(e.id, .int(Int64(100 + i)))
            XCTAssertEqual(e.message, "refused \(i)")
        }
        // Jobs are refused the same way.
        h.fake.script(.refuse(EngineError(.busy, "queue full")))
        h.send(#"{"id":200,"op":"suggest","prefix":"he"}"#)
        XCTAssertEqual(error(try h.take(1)[0])?.code, .busy)
        // A refused request holds no id: it can be sent again.
        h.fake.script(.stream(["x"], finish: .length))
        h.send(#"{"id":100,"op":"complete","prompt":"hello","stream":false}"#)
        h.waitForSubmissions(1)
        h.fake.deliver()
        guard let r = reply(try h.take(1)[0]), case .complete(let g) = r.body else { return XCTFail("not a complete reply") }
        XCTAssertEqual(g.finishReason, .length)
        XCTAssertEqual(g.text, "x", "an unstreamed reply carries the text")
    }

    func testTheInFlightCapAnswersBusyAndCountsItWithTheEnginesRefusals() throws {
        let h = try HandlerHarness { $0.maxInflightPerConnection = 1 }
        h.fake.state.withLock { $0.stats.refused[.busy] = 3 }
        h.fake.script(.hang)
        h.send(#"{"id":1,"op":"complete","prompt":"hello"}"#)
        h.waitForSubmissions(1)
        h.send(#"{"id":2,"op":"complete","prompt":"hello"}"#)
        let busy = try h.take(1)
        XCTAssertEqual(error(busy[0])?.code, .busy)
        XCTAssertEqual(busy[0].id, 2)
        h.send(#"{"id":3,"op":"stats"}"#)
        guard let r = reply(try h.take(1)[0]), case .stats(let s) = r.body else { return XCTFail("not a stats reply") }
        XCTAssertEqual(s.counters["requests_refused_busy"], 4, "the engine's 3 and the handler's 1")
        // Ending the hanging request frees the slot.
        h.send(#"{"id":4,"op":"cancel","target":1}"#)
        h.fake.deliver()
        XCTAssertEqual(try h.take(2).map(\.id), [4, 1])
        h.fake.script(.stream([], finish: .stop))
        h.send(#"{"id":2,"op":"complete","prompt":"hello"}"#)
        h.waitForSubmissions(2)
        h.fake.deliver()
        XCTAssertNotNil(reply(try h.take(1)[0]))
    }

    func testJobOutcomesAndEndsBecomeRepliesAndErrors() throws {
        let h = try HandlerHarness()
        let tok = h.fake.modelFacts.tokenizer
        h.fake.script(.outcome(.suggest(SLMEngine.SuggestResult(
            suggestions: [Suggestion(text: "llo", logprob: -0.5, tokens: [3, 4]), Suggestion(text: "lp", logprob: -2, tokens: [5])],
            promptTokens: 2, reusedTokens: 1, healed: true, healedTokens: 1, ms: 3))))
        h.send(#"{"id":5,"op":"suggest","prefix":"he","n":2,"mode":"word","session":"field"}"#)
        h.waitForSubmissions(1)
        let options = try XCTUnwrap(h.fake.submissions[0].suggest)
        XCTAssertEqual(options.n, 2)
        XCTAssertEqual(options.mode, .word)
        XCTAssertEqual(options.session, "\(UInt32.max):field", "sessions are scoped to the peer")
        h.fake.deliver()
        guard let r = reply(try h.take(1)[0]), case .suggest(let s) = r.body else { return XCTFail("not a suggest reply") }
        XCTAssertEqual(r.id, 5)
        XCTAssertEqual(s.suggestions.map(\.text), ["llo", "lp"])
        XCTAssertEqual(s.suggestions.map(\.tokens), [2, 1])
        XCTAssertEqual(s.reusedTokens, 1)

        // choose: each option is what follows the prompt's tokens in the joint tokenization.
        h.fake.script(.outcome(.ended(.deadline, nil)))
        h.send(#"{"id":6,"op":"choose","prompt":"he","options":["llo"," hello"]}"#)
        h.waitForSubmissions(2)
        // "he" + "llo" is one token, "hello", which does not start with "he"'s: "llo" is
        // tokenized alone; "he" + " hello" keeps "he" and adds " hello"'s tokens.
        XCTAssertEqual(tok.encode("hello", parseSpecial: false).count, 1)
        XCTAssertEqual(h.fake.submissions[1].choose, [tok.encode("llo", parseSpecial: false), tok.encode(" hello", parseSpecial: false)])
        h.fake.deliver()
        let deadline = try h.take(1)
        XCTAssertEqual(error(deadline[0])?.code, .deadlineExceeded)
        XCTAssertEqual(deadline[0].id, 6)

        // A job that fails carries the engine's message as an internal error.
        h.fake.script(.outcome(.ended(.error, "the pass failed")))
        h.send(#"{"id":9,"op":"suggest","prefix":"x"}"#)
        h.waitForSubmissions(3)
        h.fake.deliver()
        let failed = try XCTUnwrap(error(try h.take(1)[0]))
        XCTAssertEqual(failed.code, .internal)
        XCTAssertEqual(failed.message, "the pass failed")
        XCTAssertEqual(failed.id, 9)
    }

    static let schema = #"{"type":"object","properties":{"device":{"enum":["light","heating","door"]},"room":{"enum":["kitchen","living_room"]},"action":{"enum":["turn_on","turn_off","set"]},"value":{"type":["integer","null"],"minimum":0,"maximum":100}},"required":["device","room","action","value"],"additionalProperties":false}"#

    func testAParseWithAViolationIsUnmatchedWithTheFieldNulled() throws {
        let h = try HandlerHarness()
        // The model wrote 18 where it meant 180 (the refused "0" departed after "18").
        let text = #"{"device":"heating","room":"kitchen","action":"set","value":18}"#
        h.fake.script(.outcome(.parse(SLMEngine.ParseResult(
            text: text, complete: true, promptTokens: 9, generatedTokens: 12, forcedTokens: 3, forwardPasses: 12,
            maskMs: 0.1, ms: 20, departures: [Departure(offset: 62, wanted: Array("0".utf8), complete: true, valid: false)]))))
        let schema = String(decoding: try JSONSerialization.data(withJSONObject: Self.schema, options: .fragmentsAllowed), as: UTF8.self)
        h.send(#"{"id":12,"op":"parse","utterance":"set the kitchen heating to 180","schema":"# + schema + "}")
        h.waitForSubmissions(1)
        XCTAssertEqual(h.fake.submissions[0].parsePrompt,
                       h.fake.modelFacts.tokenizer.encode("set the kitchen heating to 180", parseSpecial: false))
        h.fake.deliver()
        guard let r = reply(try h.take(1)[0]), case .parse(let p) = r.body else { return XCTFail("not a parse reply") }
        XCTAssertEqual(r.id, 12)
        XCTAssertFalse(p.matched)
        XCTAssertEqual(p.result, .null, "an unmatched parse has no command")
        XCTAssertEqual(p.violations, [.init(field: "value", wanted: .int(180), reason: "above the maximum 100")])
        XCTAssertEqual(p.text, #"{"device":"heating","room":"kitchen","action":"set","value":null}"#)
    }

    func testParsePromptRefusalsNameTheMember() throws {
        let h = try HandlerHarness()
        let schema = String(decoding: try JSONSerialization.data(withJSONObject: Self.schema, options: .fragmentsAllowed), as: UTF8.self)
        for (refusal, code, member) in [(ParsePromptError.noChatTemplate, ErrorCode.unsupported, "chat template"),
                                        (.controlTextInUtterance, .badField, "'utterance'"),
                                        (.controlTextInExamplesOrInstruction, .badField, "'examples' or 'instruction'")] {
            h.fake.state.withLock { $0.parsePromptError = refusal }
            h.send(#"{"id":3,"op":"parse","utterance":"x","schema":"# + schema + "}")
            let frames = try h.take(1)
            guard let e = error(frames[0]) else { continue }
            XCTAssertEqual(e.code, code, "\(refusal)")
            XCTAssertEqual(e.id, 3)
            XCTAssertTrue(e.message.contains(member), e.message)
        }
        XCTAssertTrue(h.fake.submissions.isEmpty)
    }

    func testTokenizeAndDetokenizeUseTheModelsTokenizer() throws {
        let h = try HandlerHarness()
        let tok = h.fake.modelFacts.tokenizer
        h.send(#"{"id":1,"op":"tokenize","text":" hello"}"#)
        guard let r = reply(try h.take(1)[0]), case .tokenize(let ids) = r.body else { return XCTFail("not a tokenize reply") }
        XCTAssertEqual(ids, tok.encode(" hello", parseSpecial: false).map(Int.init))
        XCTAssertEqual(ids.count, 2, "the tiny vocabulary's \" hello\" is a space and \"hello\"")
        h.send("{\"id\":2,\"op\":\"detokenize\",\"ids\":\(ids)}")
        guard let d = reply(try h.take(1)[0]), case .detokenize(let text) = d.body else { return XCTFail("not a detokenize reply") }
        XCTAssertEqual(text, " hello")
        h.send("{\"id\":3,\"op\":\"detokenize\",\"ids\":[1,\(tok.vocabSize)]}")
        let bad = try XCTUnwrap(error(try h.take(1)[0]))
        XCTAssertEqual(bad.code, .badField)
        XCTAssertTrue(bad.message.contains("'ids[1]'"), bad.message)
        // The fake has no chat template: chat is unsupported, named as such.
        h.send(#"{"id":4,"op":"chat","messages":[{"role":"user","content":"hi"}]}"#)
        XCTAssertEqual(error(try h.take(1)[0])?.code, .unsupported)
        XCTAssertTrue(h.fake.submissions.isEmpty)
    }
}
