import Foundation
import GGUF
@testable import SLMTokenizer
import SLMTestSupport
import XCTest

/// Tokenizer pieces that need no real model: byte mapping, pre-tokenizer, streaming,
/// BPE on a tiny generated vocabulary, and the load-time errors.
final class TokenizerUnitTests: XCTestCase {
    func testByteLevelMappingRoundTrip() {
        var seen = Set<UInt32>()
        for b in 0..<256 {
            let text = ByteLevel.text(forByte: UInt8(b))
            XCTAssertEqual(text.unicodeScalars.count, 1)
            XCTAssertTrue(seen.insert(text.unicodeScalars.first!.value).inserted, "byte \(b) shares a scalar")
            var back: [UInt8] = []
            ByteLevel.decode(text, into: &back)
            XCTAssertEqual(back, [UInt8(b)])
        }
        XCTAssertEqual(ByteLevel.text(forByte: 0x20), "Ġ")
        XCTAssertEqual(ByteLevel.text(forByte: 0x0A), "Ċ")
        XCTAssertEqual(ByteLevel.text(forByte: UInt8(ascii: "a")), "a")
        let bytes = Array("naïve 😀\n".utf8)
        var back: [UInt8] = []
        ByteLevel.decode(ByteLevel.encode(bytes), into: &back)
        XCTAssertEqual(back, bytes)
    }

    func testSmolLMPreTokenizerSplits() {
        let p = PreTokenizer.smollm
        // Digits are isolated before anything else, so a space before a number stands alone.
        XCTAssertEqual(p.split("The year 2024"), ["The", " year", " ", "2", "0", "2", "4"])
        XCTAssertEqual(p.split("3.14"), ["3", ".", "1", "4"])
        // Contractions are lower-case only.
        XCTAssertEqual(p.split("I'm sure you've"), ["I", "'m", " sure", " you", "'ve"])
        XCTAssertEqual(p.split("DON'T"), ["DON", "'", "T"])
        XCTAssertEqual(p.split("rock 'n' roll"), ["rock", " '", "n", "'", " roll"])
        // Whitespace runs leave their last space to the next word; trailing runs stay whole.
        XCTAssertEqual(p.split("a   b"), ["a", "  ", " b"])
        XCTAssertEqual(p.split("Hello  "), ["Hello", "  "])
        XCTAssertEqual(p.split("  Hello"), [" ", " Hello"])
        // Only U+0020 prefixes a word, so a newline before a word stands alone.
        XCTAssertEqual(p.split("line\n\nnext"), ["line", "\n", "\n", "next"])
        XCTAssertEqual(p.split("x \t y"), ["x", " \t", " y"])
        // Unicode letters are letters; punctuation and emoji are "other".
        XCTAssertEqual(p.split("café résumé"), ["café", " résumé"])
        XCTAssertEqual(p.split("你好，世界"), ["你好", "，", "世界"])
        XCTAssertEqual(p.split("I love 🍕🍕!"), ["I", " love", " 🍕🍕!"])
        XCTAssertEqual(p.split("...!!"), ["...!!"])
        XCTAssertEqual(p.split(""), [])
        // Non-ASCII numbers are numbers too (and isolated).
        XCTAssertEqual(p.split("x²³"), ["x", "²", "³"])
    }

    func testGPT2PreTokenizerKeepsDigitRuns() {
        XCTAssertEqual(PreTokenizer.gpt2.split("The year 2024"), ["The", " year", " 2024"])
        XCTAssertEqual(PreTokenizer.gpt2.split("abc123"), ["abc", "123"])
    }

    func testStreamingHoldsBackSplitCharacter() {
        // 😀 is F0 9F 98 80: nothing is complete until the fourth byte.
        XCTAssertEqual(StreamingDetokenizer.completeLength([0xF0]), 0)
        XCTAssertEqual(StreamingDetokenizer.completeLength([0xF0, 0x9F, 0x98]), 0)
        XCTAssertEqual(StreamingDetokenizer.completeLength([0xF0, 0x9F, 0x98, 0x80]), 4)
        XCTAssertEqual(StreamingDetokenizer.completeLength([0x61, 0xC3]), 1)
        XCTAssertEqual(StreamingDetokenizer.completeLength([0x61, 0xC3, 0xA9]), 3)
        // Bytes that can never complete are released, not held forever.
        XCTAssertEqual(StreamingDetokenizer.completeLength([0x80, 0x80, 0x80, 0x80, 0x80]), 5)
        XCTAssertEqual(StreamingDetokenizer.completeLength([0xFF]), 1)
        XCTAssertEqual(StreamingDetokenizer.completeLength([]), 0)
    }

    // MARK: Tiny vocabulary

    /// 256 byte tokens, a control token, and merges building "hello" and " hello".
    static func tinyTokenizer() throws -> Tokenizer {
        var tokens = ["<|end|>"]
        tokens += (0..<256).map { ByteLevel.text(forByte: UInt8($0)) }
        let merged = ["he", "ll", "hell", "hello", "Ġh", "Ġhello", "lo"]
        tokens += merged
        var types = [Int32](repeating: 1, count: tokens.count)
        types[0] = 3
        // "l o" ranks after "he ll": "hello" must come out as one token, not "hel" + "lo".
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ h", "l o", "Ġh ello", "Ġh ell"]
        let path = try TinyGGUF.write([
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string("smollm")),
            ("tokenizer.ggml.tokens", .strings(tokens)),
            ("tokenizer.ggml.token_type", .int32s(types)),
            ("tokenizer.ggml.merges", .strings(merges)),
            ("tokenizer.ggml.eos_token_id", .uint32(0)),
            ("tokenizer.chat_template", .string("{{ '<|im_start|>' }}")),
        ])
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try Tokenizer(gguf: GGUFFile(path: path))
    }

    func testTinyVocabularyBPE() throws {
        let tok = try Self.tinyTokenizer()
        let hello = try XCTUnwrap(tok.id(forTokenText: "hello"))
        let spaceHell = try XCTUnwrap(tok.id(forTokenText: "Ġh"))
        let o = try XCTUnwrap(tok.id(forTokenText: "o"))
        let ell = tok.encode("hello")
        XCTAssertEqual(ell, [hello])
        // " hello": "h e" (rank 0) beats "Ġ h" (rank 4), so h is consumed before the space
        // can take it: Ġ he ll o -> Ġ hell o -> Ġ hello.
        let sp = try XCTUnwrap(tok.id(forTokenText: "Ġ"))
        XCTAssertEqual(tok.encode(" hello"), [sp, hello])
        XCTAssertEqual(tok.encode(" ho"), [spaceHell, o])
        XCTAssertEqual(tok.encode("hello<|end|>hello"), [hello, 0, hello])
        XCTAssertEqual(tok.encode("<|end|>", parseSpecial: false).count, 7)
        XCTAssertEqual(tok.decode(tok.encode("hello<|end|> ho")), "hello<|end|> ho")
        XCTAssertEqual(tok.decode(tok.encode("hello<|end|>"), renderSpecial: false), "hello")
        XCTAssertEqual(tok.eogIDs, [0])  // "<|end|>" is both the EOS id and an EOG text
    }

    func testStreamingDetokenizerOnTinyVocabulary() throws {
        let tok = try Self.tinyTokenizer()
        let ids = tok.encode("a😀b")  // no merges: one token per byte
        XCTAssertEqual(ids.count, 6)
        var stream = StreamingDetokenizer(tokenizer: tok)
        let pieces = ids.map { stream.append($0) }
        XCTAssertEqual(pieces, ["a", "", "", "", "😀", "b"])
        XCTAssertEqual(stream.finish(), "")
        // A stream cut mid-character renders the remainder as U+FFFD on finish.
        _ = stream.append(ids[1])
        XCTAssertEqual(stream.finish(), "\u{FFFD}")
    }

    func testUnsupportedModelAndPreTokenizerAreNamed() throws {
        // SentencePiece (`llama`) and `llama-bpe` are supported now; WordPiece and DeepSeek's
        // pre-tokenizer are not.
        let wpm = try TinyGGUF.write([("tokenizer.ggml.model", .string("bert"))])
        defer { try? FileManager.default.removeItem(atPath: wpm) }
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: wpm))) { error in
            guard let e = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .unsupportedModel)
            XCTAssertTrue(e.description.contains("'bert'"), e.description)
        }
        let pre = try TinyGGUF.write([
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("deepseek-llm")),
        ])
        defer { try? FileManager.default.removeItem(atPath: pre) }
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: pre))) { error in
            guard let e = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .unsupportedPreTokenizer)
            XCTAssertTrue(e.description.contains("'deepseek-llm'"), e.description)
        }
    }

    func testStreamingDetokenizerOnRealModel() throws {
        let tok = try RealModel.tokenizer()
        // llama.cpp: "😀" is three tokens, the first two ending mid-character.
        let emoji = tok.encode("😀")
        XCTAssertEqual(emoji, [10813, 242, 218])
        var stream = StreamingDetokenizer(tokenizer: tok)
        XCTAssertEqual(emoji.map { stream.append($0) }, ["", "", "😀"])

        let text = "I love 🍕🍕🍕! 你好，世界 <|im_end|>"
        var out = ""
        for id in tok.encode(text) {
            let piece = stream.append(id)
            XCTAssertFalse(piece.contains("\u{FFFD}"))
            out += piece
        }
        out += stream.finish()
        XCTAssertEqual(out, text)
    }
}
