import Foundation
import GGUF
import SLMTokenizer
import SLMTestSupport
import XCTest

/// Chat templates recognised and rendered byte for byte as llama.cpp renders them (or, where
/// slmd follows the template on purpose, as Jinja renders the template). The expected
/// strings are in Tests/Fixtures/chat-templates/expected.json, written by
/// scripts/gen-chat-fixtures from llama.cpp's `llama_chat_apply_template` and Jinja2.
final class ChatTemplateRenderTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let id: String
            let template: String?
            let choice: String?
            let eos_token: String?
            let messages: [ChatMessage]
            let add_generation_prompt: Bool
            let enable_thinking: Bool
            let format: String
            let source: String
            let expected: String
            let llama_cpp: String?
        }
        let cases: [Case]
    }

    static var fixtureURL: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/chat-templates/expected.json")
    }

    func testEveryFixtureRendersByteForByte() throws {
        let data = try Data(contentsOf: Self.fixtureURL)
        let fixture = try JSONDecoder().decode(Fixture.self, from: data)
        var identical: [String: (ok: Int, total: Int)] = [:]
        for c in fixture.cases {
            let template: ChatTemplate
            if let choice = c.choice {
                template = ChatTemplate(choice: try XCTUnwrap(ChatTemplate.Choice(rawValue: choice), c.id))
            } else {
                template = try ChatTemplate(templateText: try XCTUnwrap(c.template, c.id), eosText: c.eos_token)
            }
            XCTAssertEqual(template.name, c.format, c.id)
            let out = template.render(c.messages, addGenerationPrompt: c.add_generation_prompt, enableThinking: c.enable_thinking)
            XCTAssertEqual(out, c.expected, "\(c.id) (expected from \(c.source))")
            if c.source == "llama.cpp" { XCTAssertEqual(c.expected, c.llama_cpp, c.id) }
            let key = "\(c.format) (\(c.source))"
            var tally = identical[key] ?? (0, 0)
            tally.total += 1
            if out == c.expected { tally.ok += 1 }
            identical[key] = tally
        }
        for (key, t) in identical.sorted(by: { $0.key < $1.key }) {
            print("chat template \(key): \(t.ok)/\(t.total) renderings identical")
        }
        XCTAssertGreaterThanOrEqual(fixture.cases.count, 60)
        for format in ChatTemplate.Format.allCases {
            XCTAssertTrue(fixture.cases.contains { $0.format.hasPrefix(format.rawValue) }, "no fixture for \(format)")
        }
    }

    /// A template llama.cpp does not recognise, and one it recognises as a format slmd does
    /// not render, are errors that say so and name the setting that picks a format.
    func testUnrecognisedAndUnsupportedTemplatesAreErrors() {
        XCTAssertThrowsError(try ChatTemplate(templateText: "{% for m in messages %}{{ m.content }}{% endfor %}")) { error in
            guard let e = error as? ChatTemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .unrecognized)
            XCTAssertTrue(e.description.contains("chat_template = auto | chatml | qwen3 | llama3 | zephyr | llama2"), e.description)
        }
        let gemma = "{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
        XCTAssertThrowsError(try ChatTemplate(templateText: gemma)) { error in
            guard let e = error as? ChatTemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .unsupported)
            XCTAssertTrue(e.description.contains("'gemma'"), e.description)
            XCTAssertTrue(e.description.contains("chat_template"), e.description)
        }
        // Phi-3's vocabulary test GGUF carries a Phi-3 template: recognised, not rendered.
        let phi3 = "{{ bos_token }}{% for message in messages %}{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}{% endfor %}"
        XCTAssertThrowsError(try ChatTemplate(templateText: phi3)) { error in
            XCTAssertTrue("\(error)".contains("'phi3'"), "\(error)")
        }
    }

    /// A named format is used whatever the model's template says, including when it has none.
    func testChoiceOverridesTheModelTemplate() throws {
        let path = try TinyGGUF.write([
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.chat_template", .string("{{ something slmd does not know }}")),
        ])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let gguf = try GGUFFile(path: path)
        XCTAssertThrowsError(try ChatTemplate(gguf: gguf))
        XCTAssertEqual(try ChatTemplate(gguf: gguf, choice: .llama3).format, .llama3)
        XCTAssertEqual(try ChatTemplate(gguf: gguf, choice: .qwen3).render([ChatMessage(role: "user", content: "x")]),
                       "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
        let none = try TinyGGUF.write([("tokenizer.ggml.model", .string("gpt2"))])
        defer { try? FileManager.default.removeItem(atPath: none) }
        XCTAssertEqual(try ChatTemplate(gguf: GGUFFile(path: none), choice: .zephyr).endOfTurn, "<|endoftext|>")
    }

    /// The template's end-of-turn token ends generation, with the metadata's EOS and EOT:
    /// Llama 3's `<|eot_id|>`, ChatML's `<|im_end|>`, TinyLlama's `</s>` (its EOS).
    func testEndOfTurnTokensEndGeneration() throws {
        let bpe = VocabReferenceTests.directory + "/ggml-vocab-llama-bpe.gguf"
        let gguf = try GGUFFile(path: bpe)
        let template = ChatTemplate(choice: .llama3)
        let tok = try Tokenizer(gguf: gguf, endOfTurnTexts: template.endOfTurnTexts)
        let eot = try XCTUnwrap(tok.id(forTokenText: "<|eot_id|>"))
        XCTAssertTrue(tok.isEOG(eot))
        XCTAssertTrue(tok.isEOG(tok.eosID))  // <|end_of_text|>
        // The Llama 3 prompt tokenizes with its headers as single control tokens.
        let ids = tok.encode(template.render([ChatMessage(role: "user", content: "Hi")]), parseSpecial: true)
        XCTAssertEqual(ids.first.map { tok.tokenText($0) }, "<|start_header_id|>")
        XCTAssertTrue(ids.contains(eot))

        let zephyr = try ChatTemplate(templateText: Self.tinyLlama, eosText: "</s>")
        XCTAssertEqual(zephyr.format, .zephyr)
        XCTAssertEqual(zephyr.endOfTurnTexts, ["</s>"])
        let spm = try Tokenizer(gguf: GGUFFile(path: VocabReferenceTests.directory + "/ggml-vocab-llama-spm.gguf"),
                                endOfTurnTexts: zephyr.endOfTurnTexts)
        XCTAssertEqual(spm.eogIDs, [2])
        // As llama.cpp builds a chat prompt: BOS, then the rendered text with specials parsed.
        let prompt = spm.tokenize(zephyr.render([ChatMessage(role: "user", content: "Hi")]), addSpecial: true)
        XCTAssertEqual(prompt.first, 1)
        XCTAssertEqual(prompt.filter { $0 == 2 }.count, 1)  // the user turn's </s>
    }

    /// TinyLlama-1.1B-Chat-v1.0's template (the same as Zephyr's).
    static let tinyLlama = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
}
