import Foundation
import GGUF
import SLMKernels
import SLMTestSupport
import SLMTokenizer
import XCTest
@testable import SLMModel

/// llama, qwen2 and qwen3 toys with each family's REAL vocabulary, against llama.cpp (issue #12:
/// "small dims but the real vocab of each family"): the llama toy carries llama.cpp's
/// SentencePiece vocab (ggml-vocab-llama-spm.gguf: 32000 tokens, scores, byte fallback, BOS),
/// qwen2 and qwen3 the qwen2 BPE vocab (ggml-vocab-qwen2.gguf: 151936 tokens, 151387 merges,
/// pre-tokenizer qwen2, ChatML template), each quantized by llama-quantize to several presets.
/// So our tokenizer, read from the toy's own metadata, must produce llama.cpp's prompt ids
/// (BOS included where the vocab asks), a chat turn must render as the vocab's template does,
/// and the 151936-row output matrix must give llama.cpp's logits. The files are too big for
/// git or for a test to write each run: setup builds them (`make toy-realvocab-models`), and
/// a file is trusted only with the sha256 the fixture was recorded from.
final class ToyRealVocabReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let prompt: String
            let prompt_ids: [Int32]
            let greedy_ids: [Int32]
            let steps: [ToyKQuantReferenceTests.Fixture.Case.Step]
            /// Present on the chat case: the messages `prompt` is the vocab's template rendering of.
            let chat: [ChatMessage]?
            var asKQuantCase: ToyKQuantReferenceTests.Fixture.Case {
                .init(prompt: prompt, prompt_ids: prompt_ids, greedy_ids: greedy_ids, steps: steps)
            }
        }
        struct Vocab: Decodable {
            let file: String, sha256: String, tokens: Int, model: String, pre: String
        }
        struct Model: Decodable {
            let name: String, architecture: String, vocab: String, preset: String, tied: Bool
            let sha256: String, bytes: Int
            let tensor_types: [String: Int]
            let cases: [Case]
            var file: String { "\(name).\(preset).gguf" }
        }
        let spec: Int
        let vocabs: [String: Vocab]
        let models: [Model]
    }

    /// The setup target named in every "missing file" failure.
    static let makeTarget = "make toy-realvocab-models"

    static func fixture() throws -> Fixture {
        let url = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/toy-models/realvocab.json")
        let data = try XCTUnwrap(FileManager.default.contents(atPath: url.path),
                                 "\(url.path) missing (scripts/make-toy-models --realvocab)")
        return try JSONDecoder().decode(Fixture.self, from: data)
    }

    /// The cached file of a fixture entry, after proving it is the one llama.cpp ran.
    static func open(_ m: Fixture.Model) throws -> SLMModel.Model {
        try ToyKQuantReferenceTests.openPinned(TestModel.directory + "/toy-realvocab/" + m.file, sha256: m.sha256,
                                               makeTarget: makeTarget)
    }

    func testRealVocabToysMatchLlamaCpp() throws {
        let ref = try Self.fixture()
        XCTAssertEqual(ref.spec, 1, "fixture made by another formula")
        XCTAssertEqual(Set(ref.models.map(\.architecture)), ["llama", "qwen2", "qwen3"])
        var report: [String] = []
        var typesSeen = Set<String>()
        for m in ref.models {
            let id = "\(m.architecture)/\(m.vocab) \(m.preset)"
            let vocab = try XCTUnwrap(ref.vocabs[m.vocab], id)
            let model = try Self.open(m)
            XCTAssertEqual(model.config.architecture.rawValue, m.architecture, id)
            XCTAssertEqual(model.weights.outputIsTied, m.tied, id)
            // The real vocabulary, whole: every token is in the toy and in its output rows.
            XCTAssertEqual(model.tokenizer.vocabSize, vocab.tokens, "\(id): vocabulary size")
            XCTAssertEqual(model.config.vocabSize, vocab.tokens, "\(id): output rows")
            XCTAssertEqual(model.summary.tokenizer, vocab.model, "\(id): tokenizer kind")
            typesSeen.formUnion(try ToyKQuantReferenceTests.checkTensorTypes(model, expected: m.tensor_types,
                                                                             preset: m.preset, id))

            let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                                maxBatch: 32, maxContext: 64, maxLogits: 1)
            var agreement = ToyKQuantReferenceTests.Agreement()
            var sameIDs = 0
            for c in m.cases {
                // llama.cpp tokenized with add_special=true: BOS where the vocab asks for it.
                let ids = model.tokenizer.tokenize(c.prompt, addSpecial: true, parseSpecial: true)
                XCTAssertEqual(ids, c.prompt_ids, "\(id): prompt ids of '\(c.prompt)'")
                if ids == c.prompt_ids { sameIDs += 1 }
                if let chat = c.chat {
                    XCTAssertEqual(try model.renderChat(chat), c.prompt, "\(id): chat template rendering")
                    XCTAssertEqual(try model.chatPromptIDs(chat), c.prompt_ids, "\(id): chat prompt ids")
                }
                try ToyKQuantReferenceTests.followGreedyPath(runner, c.asKQuantCase, id: id, into: &agreement)
            }
            report.append("\(id) tokenization \(sameIDs)/\(m.cases.count) \(agreement)")
        }
        XCTAssertTrue(ref.models.contains { $0.cases.contains { $0.chat != nil } }, "no chat case")
        XCTAssertTrue(["Q4_K", "Q6_K", "Q8_0"].allSatisfy(typesSeen.contains), "\(typesSeen)")
        print("real-vocab toys vs llama.cpp: " + report.joined(separator: "; "))
    }
}
