import Foundation
import SLMTokenizer
@testable import SLMServer
import XCTest

/// `chat_template`: auto, or a format named instead of the model's template.
final class ChatTemplateConfigTests: XCTestCase {
    func testChatTemplateKey() throws {
        var c = DaemonConfig()
        XCTAssertEqual(c.chatTemplate, .auto)
        for choice in ChatTemplate.Choice.allCases {
            try c.set("chat_template", choice.rawValue)
            XCTAssertEqual(c.chatTemplate, choice)
        }
        XCTAssertThrowsError(try c.apply(configText: "chat_template = gemma\n", source: "x.conf")) {
            XCTAssertEqual("\($0)", "x.conf:1: chat_template: expected one of auto, chatml, qwen3, llama3, zephyr, llama2, "
                                  + "llama2-sys, llama2-sys-bos, llama2-sys-strip, got 'gemma'")
        }
    }

    func testShippedConfigDocumentsChatTemplate() throws {
        let text = try String(contentsOf: ConfigTests.shippedConfig, encoding: .utf8)
        var c = DaemonConfig()
        try c.apply(configText: text, source: "etc/slmd.conf")
        XCTAssertEqual(c.chatTemplate, .auto)
        XCTAssertTrue(text.contains("\nchat_template = auto\n"))
    }
}
