@testable import SLMEngine
import SLMModel
import SLMProtocol
@testable import SLMServer
import XCTest

/// The frame a finished job becomes, in process: an interrupted parse is an error, never a
/// result the client already gave up on (§10).
final class JobFrameTests: XCTestCase {
    func parse(interrupted: SLMModel.FinishReason?) -> SLMEngine.ParseResult {
        SLMEngine.ParseResult(text: #"{"device":"li"#, complete: false, interrupted: interrupted, promptTokens: 40,
                              generatedTokens: 3, forcedTokens: 2, forwardPasses: 3, maskMs: 0.1, ms: 12)
    }

    func testAnInterruptedParseIsAnErrorWithItsReason() throws {
        for (reason, code) in [(SLMModel.FinishReason.cancelled, "cancelled"), (.superseded, "cancelled"), (.deadline, "deadline_exceeded")] {
            let frame = RequestHandler.jobFrame(id: 7, .parse(parse(interrupted: reason)))
            guard case .error(let e) = try ServerMessage(frame: frame) else { return XCTFail("\(reason): not an error") }
            XCTAssertEqual(e.code.name, code)
            XCTAssertEqual(e.id, 7)
        }
    }

    func testAnUninterruptedParseIsAReply() throws {
        let frame = RequestHandler.jobFrame(id: 8, .parse(parse(interrupted: nil)))
        guard case .reply(let r) = try ServerMessage(frame: frame), case .parse(let p) = r.body else { return XCTFail("not a parse reply") }
        XCTAssertFalse(p.complete)
        XCTAssertFalse(p.matched)
    }
}
