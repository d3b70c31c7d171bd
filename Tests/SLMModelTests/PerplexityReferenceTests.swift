import Foundation
import SLMTestSupport
import XCTest
@testable import SLMModel

/// Perplexity on the reference text (perplexity-text.txt, the project's own docs frozen) within
/// 1% of llama-perplexity at the same context (perplexity.json).
final class PerplexityReferenceTests: XCTestCase {
    static let relativeTolerance = 0.01

    func check(context: Int, key: String) throws {
        let ref = try ReferenceData.json("perplexity.json")
        let expected = (ref["results"] as! [String: Any])[key] as! [String: Any]
        let refPPL = expected["ppl"] as! Double
        let refChunks = expected["chunks"] as! Int
        let text = try PerplexityText.load()
        var bytes = [UInt8](try Data(contentsOf: text.url))
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }  // llama-perplexity -f strips one
        let (model, runner) = try ReferenceData.runner()
        let ids = model.tokenizer.encode(String(decoding: bytes, as: UTF8.self), parseSpecial: false)
        XCTAssertEqual(ids.count, text.nTokens)
        let r = try Perplexity.evaluate(runner: runner, tokens: ids, context: context)
        XCTAssertEqual(r.chunks, refChunks)
        XCTAssertEqual(r.scored, refChunks * (context / 2 - 1))
        let rel = abs(r.ppl - refPPL) / refPPL
        print("perplexity c\(context): ours \(r.ppl), llama.cpp \(refPPL), relative difference \(rel * 100)%")
        XCTAssertLessThanOrEqual(rel, Self.relativeTolerance)
    }

    func testPerplexityContext128() throws { try check(context: 128, key: "c128") }
    func testPerplexityContext512() throws { try check(context: 512, key: "c512") }
}
