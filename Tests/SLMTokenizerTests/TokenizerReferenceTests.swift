import Foundation
import GGUF
import SLMTokenizer
import SLMTestSupport
import XCTest

/// Checks the tokenizer and chat template against llama.cpp's own outputs for the real model
/// (Tests/Fixtures/reference): every id must be identical, not just "close".
final class TokenizerReferenceTests: XCTestCase {
    struct TokenizerReference: Decodable {
        struct Case: Decodable {
            let index: Int
            let text: String
            let ids: [Int32]
            let ids_no_special: [Int32]?
        }
        let cases: [Case]
    }

    struct GreedyReference: Decodable {
        struct Case: Decodable {
            let id: String
            let kind: String
            let prompt: String
            let prompt_ids: [Int32]
        }
        let cases: [Case]
    }

    func testTokenizerMatchesLlamaCpp() throws {
        let tok = try RealModel.tokenizer()
        let ref = try loadReferenceJSON("tokenizer.json", as: TokenizerReference.self)
        XCTAssertFalse(ref.cases.isEmpty)
        var identical = 0
        for c in ref.cases {
            let parsed = tok.encode(c.text, parseSpecial: true)
            let plain = tok.encode(c.text, parseSpecial: false)
            let expectedPlain = c.ids_no_special ?? c.ids
            var ok = true
            if parsed != c.ids {
                ok = false
                XCTFail("case \(c.index) \(c.text.debugDescription) parseSpecial=true: got \(parsed), expected \(c.ids)")
            }
            if plain != expectedPlain {
                ok = false
                XCTFail("case \(c.index) \(c.text.debugDescription) parseSpecial=false: got \(plain), expected \(expectedPlain)")
            }
            let round = tok.decode(parsed, renderSpecial: true)
            if round != c.text {
                ok = false
                XCTFail("case \(c.index): decode(encode(s)) = \(round.debugDescription), expected \(c.text.debugDescription)")
            }
            let roundPlain = tok.decode(plain, renderSpecial: false)
            if roundPlain != c.text {
                ok = false
                XCTFail("case \(c.index): decode(encode(s, parseSpecial: false)) = \(roundPlain.debugDescription)")
            }
            if ok { identical += 1 }
        }
        print("tokenizer: \(identical)/\(ref.cases.count) identical")
        XCTAssertEqual(identical, ref.cases.count)
    }

    func testGreedyPromptIDsAndChatTemplate() throws {
        let gguf = try RealModel.gguf()
        let tok = try RealModel.tokenizer()
        let template = try ChatTemplate(gguf: gguf)
        let ref = try loadReferenceJSON("greedy.json", as: GreedyReference.self)
        var idsOK = 0, chats = 0, rendered = 0
        for c in ref.cases {
            let ids = tok.encode(c.prompt, parseSpecial: true)
            XCTAssertEqual(ids, c.prompt_ids, "prompt ids of \(c.id)")
            if ids == c.prompt_ids { idsOK += 1 }
            guard c.kind == "chat" else { continue }
            chats += 1
            let user = try XCTUnwrap(Self.userText(of: c.prompt), "no user turn in \(c.id)")
            let prompt = template.render([ChatMessage(role: "user", content: user)])
            XCTAssertEqual(prompt, c.prompt, "chat rendering of \(c.id)")
            if prompt == c.prompt { rendered += 1 }
        }
        print("greedy prompts: \(idsOK)/\(ref.cases.count) prompt_ids identical, \(rendered)/\(chats) chat renderings identical")
        XCTAssertGreaterThan(chats, 0)
    }

    /// The user text sits between `<|im_start|>user\n` and the next `<|im_end|>`.
    static func userText(of prompt: String) -> String? {
        guard let start = prompt.range(of: "<|im_start|>user\n"),
              let end = prompt.range(of: "<|im_end|>", range: start.upperBound..<prompt.endIndex) else { return nil }
        return String(prompt[start.upperBound..<end.lowerBound])
    }

    /// llama-perplexity strips one trailing newline and tokenizes without special parsing;
    /// perplexity.json records its token count for the text.
    func testPerplexityTextTokenCount() throws {
        let tok = try RealModel.tokenizer()
        let reference = try PerplexityText.load()
        var text = try String(contentsOf: reference.url, encoding: .utf8)
        if text.hasSuffix("\n") { text.removeLast() }
        let clock = ContinuousClock()
        var ids: [Int32] = []
        let elapsed = clock.measure { ids = tok.encode(text, parseSpecial: false) }
        print("perplexity text: \(text.utf8.count) bytes -> \(ids.count) tokens in \(elapsed)")
        XCTAssertEqual(ids.count, reference.nTokens)
        XCTAssertEqual(tok.decode(ids), text)
    }

    func testEndOfGenerationSet() throws {
        let tok = try RealModel.tokenizer()
        XCTAssertEqual(tok.eogIDs, [0, 2, 4])
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertFalse(tok.addBOS)
        XCTAssertEqual(tok.vocabSize, 49152)
        XCTAssertTrue(tok.isEOG(2))
        XCTAssertFalse(tok.isEOG(1))
        XCTAssertTrue(tok.isControl(1))
        XCTAssertFalse(tok.isControl(17))
        XCTAssertEqual(tok.tokenText(2), "<|im_end|>")
        XCTAssertEqual(tok.tokenBytes(2), Array("<|im_end|>".utf8))
        XCTAssertEqual(tok.decode([1, 2], renderSpecial: false), "")
    }

    /// SmolLM's vocabulary has no token for a few bytes (0x04, 0x06, 0x13, ...). llama.cpp
    /// drops such a byte when BPE cannot merge it; slmd does the same so ids stay identical.
    func testBytesWithoutTokenAreDroppedLikeLlamaCpp() throws {
        let tok = try RealModel.tokenizer()
        XCTAssertEqual(tok.encode("a\u{04}b"), tok.encode("a") + tok.encode("b"))
        XCTAssertEqual(tok.encode("\u{06}"), [])
    }
}
