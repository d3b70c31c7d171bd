import Foundation
import GGUF
import SLMTokenizer
import SLMTestSupport
import XCTest

/// Every tokenizer slmd supports against llama.cpp's own test vocabularies: the vocab-only
/// GGUFs in llama.cpp's models/ directory and their `.inp`/`.out` pairs (the cases
/// llama.cpp's test-tokenizer-0 checks: no BOS/EOS added, special tokens not parsed).
/// scripts/fetch-vocabs (run by `make test`) puts them in the cache; a missing file is a
/// failure with instructions, never a skip.
final class VocabReferenceTests: XCTestCase {
    static var directory: String {
        let env = ProcessInfo.processInfo.environment
        if let d = env["SLMD_VOCAB_DIR"], !d.isEmpty { return d }
        let cache = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.cache")
        return cache + "/slmd/vocabs"
    }

    struct Case {
        let text: String
        let ids: [Int32]
    }

    /// llama.cpp's `read_tests`: inputs separated by `\n__ggml_vocab_test__\n`, one line of
    /// space-separated ids per input.
    static func cases(_ vocab: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Case] {
        let base = directory + "/ggml-vocab-\(vocab).gguf"
        guard let inp = FileManager.default.contents(atPath: base + ".inp"),
              let out = FileManager.default.contents(atPath: base + ".out") else {
            let message = "\(base).inp/.out not found: run scripts/fetch-vocabs (or set SLMD_VOCAB_DIR)"
            XCTFail(message, file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        let raw = try XCTUnwrap(String(data: inp, encoding: .utf8))
        var inputs = raw.components(separatedBy: "\n__ggml_vocab_test__\n")
        if inputs.last == "" { inputs.removeLast() }
        let lines = try XCTUnwrap(String(data: out, encoding: .utf8)).split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let outputs = lines.last == "" ? Array(lines.dropLast()) : lines
        XCTAssertEqual(inputs.count, outputs.count, "\(vocab): inputs and outputs differ in count", file: file, line: line)
        return zip(inputs, outputs).map { text, ids in
            Case(text: text, ids: ids.split(separator: " ").compactMap { Int32($0) })
        }
    }

    static func tokenizer(_ vocab: String, file: StaticString = #filePath, line: UInt = #line) throws -> Tokenizer {
        let path = directory + "/ggml-vocab-\(vocab).gguf"
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("\(path) not found: run scripts/fetch-vocabs (or set SLMD_VOCAB_DIR)", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return try Tokenizer(gguf: GGUFFile(path: path))
    }

    /// Encodes every case and decodes llama.cpp's ids back; prints n/n per vocabulary.
    func check(_ vocab: String, model: Tokenizer.Model, pre: PreTokenizer?, file: StaticString = #filePath, line: UInt = #line) throws {
        let tok = try Self.tokenizer(vocab, file: file, line: line)
        XCTAssertEqual(tok.model, model, file: file, line: line)
        XCTAssertEqual(tok.preTokenizer, pre, file: file, line: line)
        let cases = try Self.cases(vocab, file: file, line: line)
        XCTAssertGreaterThan(cases.count, 40, file: file, line: line)
        var identical = 0, roundTrips = 0
        for c in cases {
            let ids = tok.encode(c.text, parseSpecial: false)
            if ids == c.ids { identical += 1 }
            XCTAssertEqual(ids, c.ids, "\(vocab): \(c.text.debugDescription)", file: file, line: line)
            let back = tok.decode(c.ids)
            if back == c.text { roundTrips += 1 }
            XCTAssertEqual(back, c.text, "\(vocab): decoding llama.cpp's ids of \(c.text.debugDescription)", file: file, line: line)
        }
        print("vocab \(vocab): \(identical)/\(cases.count) cases identical to llama.cpp, \(roundTrips)/\(cases.count) decode back to the input")
    }

    func testLlamaSPM() throws { try check("llama-spm", model: .llama, pre: nil) }
    func testPhi3() throws { try check("phi-3", model: .llama, pre: nil) }
    func testLlamaBPE() throws { try check("llama-bpe", model: .gpt2, pre: .llama3) }
    func testQwen2() throws { try check("qwen2", model: .gpt2, pre: .qwen2) }
    func testGPT2() throws { try check("gpt-2", model: .gpt2, pre: .gpt2) }
    func testMPT() throws { try check("mpt", model: .gpt2, pre: .gpt2) }
    func testStarCoder() throws { try check("starcoder", model: .gpt2, pre: .smollm) }
    func testRefact() throws { try check("refact", model: .gpt2, pre: .smollm) }
    func testCommandR() throws { try check("command-r", model: .gpt2, pre: .smollm) }

    /// BOS/EOS as llama.cpp's `llama_tokenize(add_special: true)` adds them (ids from
    /// llama-tokenize): SentencePiece and Llama 3 add BOS by default, Qwen2 names none.
    func testAddSpecialFollowsTheMetadata() throws {
        let spm = try Self.tokenizer("llama-spm")
        XCTAssertTrue(spm.addBOS)
        XCTAssertFalse(spm.addEOS)
        XCTAssertTrue(spm.addSpacePrefix)
        XCTAssertEqual(spm.tokenize("Hello world", addSpecial: true), [1, 15043, 3186])
        XCTAssertEqual(spm.tokenize("Hello world", addSpecial: false), [15043, 3186])
        XCTAssertEqual(spm.tokenize("", addSpecial: true), [1])
        // After a special token the leading space comes back; parsed specials keep their id.
        XCTAssertEqual(spm.tokenize("<s>Hi</s>", addSpecial: false, parseSpecial: true), [1, 6324, 2])
        XCTAssertEqual(spm.eogIDs, [2])
        let bpe = try Self.tokenizer("llama-bpe")
        XCTAssertTrue(bpe.addBOS)
        XCTAssertEqual(bpe.tokenize("Hello world", addSpecial: true), [128000, 9906, 1917])
        let qwen = try Self.tokenizer("qwen2")
        XCTAssertFalse(qwen.addBOS)
        XCTAssertEqual(qwen.tokenize("Hello world", addSpecial: true), [9707, 1879])
        XCTAssertTrue(qwen.isEOG(try XCTUnwrap(qwen.id(forTokenText: "<|im_end|>"))))
        XCTAssertTrue(qwen.isEOG(try XCTUnwrap(qwen.id(forTokenText: "<|endoftext|>"))))
    }

    /// Phi-3: llama.cpp gives its special tokens RSTRIP (keyed on the model name), so the
    /// whitespace after `<|user|>` or `</s>` is swallowed; `</s>`, typed user-defined in the
    /// file, is an end-of-generation marker and so parsed only with special parsing on.
    /// Expected ids from llama-tokenize.
    func testPhi3SpecialTokensStripWhitespaceAfterThem() throws {
        let phi = try Self.tokenizer("phi-3")
        let text = "<|user|>\n  Hi</s>  there<|end|>"
        XCTAssertEqual(phi.encode(text, parseSpecial: true), [32010, 6324, 2, 727, 32007])
        XCTAssertEqual(phi.encode(text, parseSpecial: false),
                       [529, 29989, 1792, 29989, 29958, 13, 29871, 6324, 829, 29879, 29958, 29871, 727, 29966, 29989, 355, 29989, 29958])
        XCTAssertTrue(phi.isEOG(32007))  // <|end|>
        XCTAssertTrue(phi.isEOG(32000))  // <|endoftext|>, the EOS
    }

    /// SentencePiece byte fallback: a character with no token becomes its UTF-8 bytes'
    /// `<0xNN>` tokens, and decodes back to the character.
    func testSentencePieceByteFallback() throws {
        let spm = try Self.tokenizer("llama-spm")
        let ids = spm.encode("🦙", parseSpecial: false)
        XCTAssertEqual(ids.map { spm.tokenText($0) }, ["▁", "<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"])
        XCTAssertEqual(ids.map { spm.tokenType($0) }, [.normal, .byte, .byte, .byte, .byte])
        XCTAssertEqual(spm.decode(ids), "🦙")
        XCTAssertEqual(spm.tokenBytes(ids[1]), [0xF0])
        var stream = StreamingDetokenizer(tokenizer: spm)
        XCTAssertEqual(ids.map { stream.append($0) }.joined(), " 🦙")  // no first-token strip when streaming
    }

    /// An unknown `tokenizer.ggml.model` and an unknown `tokenizer.ggml.pre` are refused at
    /// load, naming the value and what is supported.
    func testUnknownModelAndPreTokenizerAreRefusedByName() throws {
        let t5 = try TinyGGUF.write([("tokenizer.ggml.model", .string("t5")), ("tokenizer.ggml.tokens", .strings(["a"]))])
        defer { try? FileManager.default.removeItem(atPath: t5) }
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: t5))) { error in
            guard let e = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .unsupportedModel)
            XCTAssertEqual(e.key, "tokenizer.ggml.model")
            XCTAssertTrue(e.description.contains("'t5'"), e.description)
            XCTAssertTrue(e.description.contains("'gpt2'") && e.description.contains("'llama'"), e.description)
        }
        let pre = try TinyGGUF.write([("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("qwen35"))])
        defer { try? FileManager.default.removeItem(atPath: pre) }
        XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: pre))) { error in
            guard let e = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.kind, .unsupportedPreTokenizer)
            XCTAssertEqual(e.key, "tokenizer.ggml.pre")
            XCTAssertTrue(e.description.contains("'qwen35'"), e.description)
            for known in ["gpt-2", "smollm", "llama-bpe", "qwen2"] {
                XCTAssertTrue(e.description.contains(known), e.description)
            }
        }
    }

    /// Metadata from a hostile file cannot ask for unbounded work: a score array shorter
    /// than the vocabulary, a non-finite score and an oversized token are refused.
    func testHostileSentencePieceMetadataIsRefused() throws {
        func refuse(_ kvs: [(String, TinyGGUF.Value)], _ expect: String) throws {
            let path = try TinyGGUF.write([("tokenizer.ggml.model", .string("llama"))] + kvs)
            defer { try? FileManager.default.removeItem(atPath: path) }
            XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: path))) { error in
                XCTAssertTrue("\(error)".contains(expect), "\(error)")
            }
        }
        try refuse([("tokenizer.ggml.tokens", .strings(["<unk>", "<s>", "</s>"]))], "tokenizer.ggml.scores")
        try refuse([("tokenizer.ggml.tokens", .strings(["<unk>", "<s>", "</s>"])), ("tokenizer.ggml.scores", .float32s([0, 0]))],
                   "2 scores for 3 tokens")
        try refuse([("tokenizer.ggml.tokens", .strings(["<unk>", "<s>", "</s>"])), ("tokenizer.ggml.scores", .float32s([0, .nan, 0]))],
                   "score 1")
        try refuse([("tokenizer.ggml.tokens", .strings(["a", String(repeating: "x", count: Tokenizer.maxTokenBytes + 1)]))],
                   "token 1 is \(Tokenizer.maxTokenBytes + 1) bytes long")
    }
}
