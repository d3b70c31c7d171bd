import Foundation
import GGUF
import SLMKernels
import SLMTestSupport
import XCTest
@testable import SLMModel

/// llama, qwen2 and qwen3 toys quantized by llama.cpp's llama-quantize to Q4_K_M, Q5_K_M, Q6_K,
/// Q5_0, Q5_1 and Q8_0, against llama.cpp's outputs on the same files (issue #12's acceptance).
/// slmd cannot write K-quant files, so setup does (`make toy-kquant-models`, i.e.
/// scripts/make-toy-models --fetch-kquants, into <model cache>/toy-kquants); the test trusts a
/// file only if its sha256 is the one the fixture was recorded from, and checks that it really
/// holds the preset's types (llama-quantize silently falls back to other types on rows that
/// are not whole 256-value super-blocks, which would make the test vacuous).
final class ToyKQuantReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            struct Step: Decodable { let top20: [[Double]] }
            let prompt: String
            let prompt_ids: [Int32]
            let greedy_ids: [Int32]
            let steps: [Step]
        }
        struct Model: Decodable {
            let name: String, architecture: String, preset: String, tied: Bool
            let sha256: String, bytes: Int
            let tensor_types: [String: Int]
            let cases: [Case]
            var file: String { "\(name).\(preset).gguf" }
        }
        let spec: Int
        let kquant_models: [Model]
    }

    /// The bounds: |Δlogit| on llama.cpp's top 20 of every step, and the top-2 margin
    /// above which our top-1 must be llama.cpp's.
    static let logitTolerance: Float = 1.0
    static let top1Margin: Float = 1.0
    /// Greedy ids must agree at every step before the first near-tie: a step whose reference
    /// margin is at most this. The issue's own bound: where |Δlogit| may reach 1.0 a margin
    /// under 1.0 is within the tolerance, so it cannot be a stricter figure. (Measured: ours
    /// and llama.cpp's greedy ids differ only at margins ≤ 0.3, K types moving the top 20 by up
    /// to 0.55, against 0.08-0.1 for Q8_0, whose activations are quantized as llama.cpp's.)
    static let nearTie: Float = top1Margin

    /// Types each preset's file must hold (beside F32 norms/biases): the K types where the
    /// preset has them, so a llama-quantize fallback fails here rather than passing vacuously.
    static let requiredTypes: [String: Set<String>] = [
        "Q4_K_M": ["Q4_K", "Q6_K"], "Q5_K_M": ["Q5_K", "Q6_K"], "Q6_K": ["Q6_K"],
        "Q5_0": ["Q5_0", "Q6_K"], "Q5_1": ["Q5_1", "Q6_K"], "Q8_0": ["Q8_0"],
    ]

    static func fixture() throws -> Fixture {
        let url = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/toy-models/reference.json")
        let data = try XCTUnwrap(FileManager.default.contents(atPath: url.path), "\(url.path) missing (scripts/make-toy-models)")
        return try JSONDecoder().decode(Fixture.self, from: data)
    }

    /// The cached file of a fixture entry, after proving it is the one llama.cpp ran.
    static func open(_ m: Fixture.Model, weightsLayout: WeightsLayout = .mapped) throws -> SLMModel.Model {
        try openPinned(TestModel.directory + "/toy-kquants/" + m.file, sha256: m.sha256, makeTarget: "make toy-kquant-models",
                       weightsLayout: weightsLayout)
    }

    /// Asserts the file's per-type tensor counts and that it holds the types its preset must
    /// (so a llama-quantize fallback cannot make a check vacuous); returns the types seen.
    static func checkTensorTypes(_ model: SLMModel.Model, expected: [String: Int], preset: String,
                                 _ id: String) throws -> Set<String> {
        var counts: [String: Int] = [:]
        for t in model.file.tensors { counts[t.type.name, default: 0] += 1 }
        XCTAssertEqual(counts, expected, "\(id): tensor types")
        let required = try XCTUnwrap(requiredTypes[preset], preset)
        XCTAssertTrue(required.isSubset(of: counts.keys), "\(id) holds \(counts), not \(required)")
        return Set(counts.keys)
    }

    /// A model file setup built into the cache, opened only if its sha256 is the one the fixture
    /// was recorded from; missing or different is a failure that names the make target.
    static func openPinned(_ path: String, sha256 expected: String, makeTarget: String,
                           weightsLayout: WeightsLayout = .mapped) throws -> SLMModel.Model {
        guard let sha = SHA256.hex(ofFile: path) else {
            throw ReferenceData.Missing(description: "\(path) not found: run `\(makeTarget)`")
        }
        guard sha == expected else {
            throw ReferenceData.Missing(description: "\(path): sha256 \(sha), the fixture was made from \(expected); "
                                            + "remove it and run `\(makeTarget)`")
        }
        return try SLMModel.Model(path: path, weightsLayout: weightsLayout)
    }

    /// How far ours follows llama.cpp on a set of cases, for the report line.
    struct Agreement: CustomStringConvertible {
        var worst: Float = 0, greedySame = 0, greedyTotal = 0, checkedUntilTie = 0
        /// The largest reference margin at which our argmax differed.
        var widestFlip: Float = 0
        var description: String {
            String(format: "max|Δ| %.3f greedy %d/%d (%d before a near-tie; differs at margins ≤ %.3f)",
                   worst, greedySame, greedyTotal, checkedUntilTie, widestFlip)
        }
    }

    /// Feeds the case's prompt ids, then follows llama.cpp's greedy path step by step (so every
    /// step compares the same context), asserting the bounds: |Δlogit| on the reference's
    /// top 20, our top-1 where the margin exceeds `top1Margin`, and greedy ids before the
    /// first near-tie. One definition for every toy reference test.
    static func followGreedyPath(_ runner: Runner, _ c: Fixture.Case, id: String, into a: inout Agreement,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
        let session = Session(runner: runner, capacity: 64)
        var logits = try session.feed(c.prompt_ids)
        var beforeTie = true
        let prompt = c.prompt.count > 40 ? String(c.prompt.prefix(40)) + "…" : c.prompt
        for (k, step) in c.steps.enumerated() {
            let top = step.top20.map { (Int($0[0]), Float($0[1])) }
            XCTAssertEqual(Int32(top[0].0), c.greedy_ids[k], "\(id): the fixture's greedy id is its top-1",
                           file: file, line: line)
            var maxDiff: Float = 0
            for (tok, l) in top { maxDiff = max(maxDiff, abs(logits[tok] - l)) }
            XCTAssertLessThanOrEqual(maxDiff, logitTolerance, "\(id) '\(prompt)' step \(k): max |Δlogit|",
                                     file: file, line: line)
            a.worst = max(a.worst, maxDiff)
            let ours = Sampler.argmax(UnsafeBufferPointer(logits))
            let margin = top[0].1 - top[1].1
            if margin > top1Margin {
                XCTAssertEqual(ours, c.greedy_ids[k], "\(id) '\(prompt)' step \(k): top-1 (margin \(margin))",
                               file: file, line: line)
            }
            if margin <= nearTie { beforeTie = false }
            if beforeTie {
                XCTAssertEqual(ours, c.greedy_ids[k], "\(id) '\(prompt)' step \(k): greedy before a near-tie",
                               file: file, line: line)
                a.checkedUntilTie += 1
            }
            a.greedyTotal += 1
            if ours == c.greedy_ids[k] { a.greedySame += 1 } else { a.widestFlip = max(a.widestFlip, margin) }
            if k + 1 < c.steps.count { logits = try session.feed([c.greedy_ids[k]]) }
        }
    }

    /// The daemon repacks by default (`weights_layout = repacked`), which puts the K-quant
    /// tensors in tile16 for their own kernels: every toy with such tensors gives the
    /// mapped load's logits bit for bit, over its first case's prompt and three greedy steps.
    func testRepackedKQuantToysGiveTheSameLogits() throws {
        var compared = 0
        for m in try Self.fixture().kquant_models
        where ["Q4_K", "Q5_K", "Q6_K"].contains(where: { m.tensor_types[$0, default: 0] > 0 }) {
            let id = "\(m.architecture) \(m.preset)", c = m.cases[0]
            var out: [[Float]] = []
            for layout in [WeightsLayout.mapped, .repacked] {
                let model = try Self.open(m, weightsLayout: layout)
                let kq = ([model.weights.output] + model.weights.layers.flatMap {
                    [$0.wq, $0.wk, $0.wv, $0.wo, $0.wGate, $0.wUp, $0.wDown]
                }).filter { $0.type.blockElements == QKK }
                XCTAssertFalse(kq.isEmpty, id)
                for w in kq {
                    XCTAssertEqual(w.layout, layout == .repacked && Kernels.prefersTile16(w.type) ? .tile16 : .rows, id)
                }
                let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                                    maxBatch: 32, maxContext: 64, maxLogits: 1)
                let session = Session(runner: runner, capacity: 64)
                var logits = Array(try session.feed(c.prompt_ids))
                for next in c.greedy_ids.prefix(3) { logits += try session.feed([next]) }
                out.append(logits)
            }
            XCTAssertEqual(out[0].map(\.bitPattern), out[1].map(\.bitPattern), "\(id): repacked logits")
            compared += 1
        }
        XCTAssertGreaterThan(compared, 0)
    }

    func testSHA256() {
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // 56 bytes: the length no longer fits the first block.
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    func testQuantizedToysMatchLlamaCpp() throws {
        let ref = try Self.fixture()
        XCTAssertEqual(ref.spec, 2, "fixture made by another formula")
        XCTAssertEqual(Set(ref.kquant_models.map { "\($0.architecture) \($0.preset)" }).count, 18)
        var report: [String] = []
        var typesSeen = Set<String>()
        for m in ref.kquant_models {
            let id = "\(m.architecture) \(m.preset)"
            let model = try Self.open(m)
            XCTAssertEqual(model.config.architecture.rawValue, m.architecture, id)
            XCTAssertEqual(model.weights.outputIsTied, m.tied, id)
            typesSeen.formUnion(try Self.checkTensorTypes(model, expected: m.tensor_types, preset: m.preset, id))

            let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                                maxBatch: 32, maxContext: 64, maxLogits: 1)
            var agreement = Agreement()
            for c in m.cases {
                XCTAssertEqual(model.tokenizer.encode(c.prompt, parseSpecial: true), c.prompt_ids, "\(id): prompt ids")
                try Self.followGreedyPath(runner, c, id: id, into: &agreement)
            }
            report.append("\(id) \(agreement)")
        }
        XCTAssertTrue(["Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1", "Q8_0"].allSatisfy(typesSeen.contains), "\(typesSeen)")
        print("toy K-quants vs llama.cpp: " + report.joined(separator: "; "))
    }
}
