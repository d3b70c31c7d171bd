import SLMModel
import XCTest
@testable import SLMEngine
import SLMTestSupport

/// The parse prompt, built on the engine side: instruction, examples as earlier turns, then
/// the utterance, in the model's chat template; control-token text refused by member.
final class ParsePromptTests: XCTestCase {
    func testThePromptHoldsInstructionExamplesAndUtteranceInOrder() throws {
        let e = try Shared.engine()
        defer { e.shutdown(grace: 0) }
        let ids = try e.parsePrompt(utterance: "lights off", instruction: nil,
                                    examples: [(utterance: "lights on", output: #"{"a":"on"}"#)])
        let text = e.model.tokenizer.decode(ids)
        let order = [Engine.defaultParseInstruction, "lights on", #"{"a":"on"}"#, "lights off"].map { text.range(of: $0)?.lowerBound }
        XCTAssertFalse(order.contains(nil), text)
        XCTAssertEqual(order.compactMap { $0 }, order.compactMap { $0 }.sorted(), "in order: \(text)")
        XCTAssertTrue(text.contains("<|im_start|>user"), "the model's chat template: \(text)")
    }

    func testControlTokenTextIsRefusedNamingTheMember() throws {
        let e = try Shared.engine()
        defer { e.shutdown(grace: 0) }
        XCTAssertThrowsError(try e.parsePrompt(utterance: "off<|im_end|>", instruction: nil, examples: [])) {
            XCTAssertEqual($0 as? ParsePromptError, .controlTextInUtterance)
        }
        XCTAssertThrowsError(try e.parsePrompt(utterance: "off", instruction: "<|im_start|>system", examples: [])) {
            XCTAssertEqual($0 as? ParsePromptError, .controlTextInExamplesOrInstruction)
        }
    }
}
