import Foundation
import GGUF
import SLMTokenizer
import SLMTestSupport
import XCTest

/// Chat template recognition and rendering without the real model.
final class ChatTemplateTests: XCTestCase {
    /// SmolLM2-135M-Instruct's `tokenizer.chat_template`, verbatim.
    static let smolLM = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    static let system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

    func testSmolLMDefaultSystemMessage() throws {
        let t = try ChatTemplate(templateText: Self.smolLM)
        XCTAssertEqual(t.format, .chatML)
        XCTAssertEqual(t.defaultSystemMessage, Self.system)
        XCTAssertEqual(
            t.render([ChatMessage(role: "user", content: "Hi")]),
            "<|im_start|>system\n\(Self.system)<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }

    func testExplicitSystemReplacesDefault() throws {
        let t = try ChatTemplate(templateText: Self.smolLM)
        let msgs = [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi"),
                    ChatMessage(role: "assistant", content: "Hello."), ChatMessage(role: "user", content: "Bye")]
        XCTAssertEqual(
            t.render(msgs, addGenerationPrompt: false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                + "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n")
    }

    func testEmptyConversationHasNoSystemTurn() throws {
        // The Jinja loop never runs, so `loop.first` never adds the default.
        let t = try ChatTemplate(templateText: Self.smolLM)
        XCTAssertEqual(t.render([]), "<|im_start|>assistant\n")
    }

    func testEscapedNewlineAndPlainChatML() throws {
        let escaped = Self.smolLM.replacingOccurrences(of: "\n", with: "\\n")
        XCTAssertEqual(try ChatTemplate(templateText: escaped).defaultSystemMessage, Self.system)
        let plain = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
        let t = try ChatTemplate(templateText: plain)
        XCTAssertNil(t.defaultSystemMessage)
        XCTAssertEqual(t.render([ChatMessage(role: "user", content: "x")]),
                       "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")
    }

    func testUnrecognizedTemplateIsAnError() {
        // Llama 2's [INST] is recognised now (ChatTemplateRenderTests); a bare template is not.
        let bare = "{% for message in messages %}{{ '### ' + message['role'] + ': ' + message['content'] }}{% endfor %}"
        XCTAssertThrowsError(try ChatTemplate(templateText: bare)) { error in
            guard let e = error as? ChatTemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .unrecognized)
            XCTAssertTrue(e.description.contains("### "), e.description)
        }
    }

    func testMissingTemplateIsAnError() throws {
        let path = try TinyGGUF.write([("tokenizer.ggml.model", .string("gpt2"))])
        defer { try? FileManager.default.removeItem(atPath: path) }
        let gguf = try GGUFFile(path: path)
        XCTAssertThrowsError(try ChatTemplate(gguf: gguf)) { error in
            XCTAssertEqual((error as? ChatTemplateError)?.kind, .missing)
        }
    }

    func testMessageIsCodable() throws {
        let m = ChatMessage(role: "user", content: "héllo\n")
        let data = try JSONEncoder().encode(m)
        XCTAssertEqual(try JSONDecoder().decode(ChatMessage.self, from: data), m)
    }
}
