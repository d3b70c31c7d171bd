import Foundation
import GGUF
import SLMKernels
import SLMTestSupport
import XCTest
@testable import SLMModel

/// llama, qwen2 and qwen3 against llama.cpp on tiny random-weight models (F32, F16, Q8_0,
/// Q4_0 tensors): the test writes each model (ToyArchitectures), proves its weights are the
/// ones llama.cpp ran (digest), then follows llama.cpp's greedy path step by step comparing
/// the top-20 logits (within `tolerance`), and requires our argmax to be
/// llama.cpp's wherever the reference's top-2 margin is not a near-tie.
final class ArchitectureReferenceTests: XCTestCase {
    /// Below this top-2 margin the reference's choice is a coin toss at float precision.
    static let nearTie: Float = 0.01
    /// Tighter than LogitsReferenceTests' 1.0, which these logits (|l| < 4) would pass even
    /// with a wrong RoPE pairing: measured max 0.043 (qwen3 Q8_0) on an AMD EPYC (AVX-512 VNNI), so 0.25
    /// leaves room for another CPU's float order in llama.cpp.
    static let tolerance: Float = 0.25

    static func fixture() throws -> [String: Any] {
        let url = TestPaths.packageRoot.appendingPathComponent("Tests/Fixtures/toy-models/reference.json")
        let data = try XCTUnwrap(FileManager.default.contents(atPath: url.path), "\(url.path) missing (scripts/make-toy-models)")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testToyModelsMatchLlamaCpp() throws {
        let ref = try Self.fixture()
        XCTAssertEqual(ref["spec"] as? Int, 2, "fixture made by another formula than ToyArchitectures")
        let models = try XCTUnwrap(ref["models"] as? [[String: Any]])
        XCTAssertEqual(models.count, 12)
        var report: [String] = []
        var seenArchs: Set<String> = []
        for m in models {
            let name = m["name"] as! String
            let arch = try XCTUnwrap(Architecture(rawValue: m["architecture"] as! String))
            let type: GGMLType = switch m["type"] as! String {
            case "F32": .f32
            case "F16": .f16
            case "Q8_0": .q8_0
            default: .q4_0
            }
            seenArchs.insert(arch.rawValue)
            let path = try ToyArchitectures.write(name: name, architecture: arch, type: type)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let model = try Model(path: path)
            XCTAssertEqual(ToyArchitectures.digest(model.file), m["weights_digest"] as? String,
                           "\(name): the Swift writer's weights differ from the script's")
            XCTAssertEqual(model.config.architecture, arch)
            XCTAssertEqual(model.weights.outputIsTied, m["tied"] as? Bool)
            let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                                maxBatch: 32, maxContext: 64, maxLogits: 1)
            var worst: Float = 0
            var greedyAgree = 0, greedyTotal = 0
            for c in m["cases"] as! [[String: Any]] {
                let prompt = (c["prompt_ids"] as! [Int]).map(Int32.init)
                XCTAssertEqual(model.tokenizer.encode(c["prompt"] as! String, parseSpecial: true), prompt,
                               "\(name): prompt tokenization")
                let greedy = (c["greedy_ids"] as! [Int]).map(Int32.init)
                let steps = c["steps"] as! [[String: Any]]
                let session = Session(runner: runner, capacity: 64)
                var logits = try session.feed(prompt)
                for (k, step) in steps.enumerated() {
                    let top = (step["top20"] as! [[Double]]).map { (Int($0[0]), Float($0[1])) }
                    var maxDiff: Float = 0
                    for (tok, l) in top { maxDiff = max(maxDiff, abs(logits[tok] - l)) }
                    XCTAssertLessThanOrEqual(maxDiff, min(Self.tolerance, LogitsReferenceTests.tolerance),
                                              "\(name) step \(k): max |Δlogit|")
                    worst = max(worst, maxDiff)
                    let ours = Sampler.argmax(UnsafeBufferPointer(logits))
                    XCTAssertEqual(Int32(top[0].0), greedy[k], "\(name): fixture's greedy id is its top-1")
                    let margin = top[0].1 - top[1].1
                    greedyTotal += 1
                    if ours == greedy[k] {
                        greedyAgree += 1
                    } else {
                        XCTAssertLessThan(margin, Self.nearTie, "\(name) step \(k): argmax \(ours), llama.cpp \(greedy[k])")
                    }
                    // Follow llama.cpp's path so every step compares the same context.
                    if k + 1 < steps.count { logits = try session.feed([greedy[k]]) }
                }
            }
            report.append("\(name) max|Δ| \(String(format: "%.2e", worst)) greedy \(greedyAgree)/\(greedyTotal)")
        }
        XCTAssertEqual(seenArchs, ["llama", "qwen2", "qwen3"])
        print("toy architectures vs llama.cpp: " + report.joined(separator: "; "))
    }

    // MARK: Refusals

    /// The error loading a toy model without the tensors in `skip` and changed by `edit`, or
    /// nil if it loads.
    private func load(skip: Set<String> = [], base: String = "toy-qwen3-f32", architecture: Architecture = .qwen3,
                      _ edit: (inout GGUFWriter) -> Void = { _ in }) throws -> ModelError? {
        let path = try ToyArchitectures.write(name: base, architecture: architecture, type: .f32, skip: skip, edit: edit)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try Model(path: path)
            return nil
        } catch {
            return error
        }
    }

    func testUnknownArchitectureIsRefusedByName() throws {
        let e = try XCTUnwrap(try load { $0.set("general.architecture", .string("mamba")) })
        XCTAssertEqual(e.reason, .unsupportedArchitecture("mamba"))
        XCTAssertTrue(e.description.contains("'mamba'") && e.description.contains("llama, qwen2, qwen3"), e.description)
    }

    func testMissingQKNormIsNamed() throws {
        let e = try XCTUnwrap(try load(skip: ["blk.1.attn_k_norm.weight"]))
        XCTAssertEqual(e.reason, .missingTensor("blk.1.attn_k_norm.weight"))
        XCTAssertTrue(e.description.contains("blk.1.attn_k_norm.weight"), e.description)
    }

    func testUnusedTensorIsRefused() throws {
        // llama.cpp would add an output bias; slmd's graph has none, so the file is refused.
        let e = try XCTUnwrap(try load { $0.addTensor("output.bias", dims: [259], floats: [Float](repeating: 1, count: 259)) })
        XCTAssertEqual(e.reason, .badTensor("output.bias"))
    }

    /// Llama 3.1/3.2's RoPE factors divide angles: a zero, negative or non-finite one is refused
    /// by name (it would turn every rotation into NaN), and so is the tensor on qwen2, whose
    /// llama.cpp graph has none.
    func testBadRopeFactorsAreRefused() throws {
        for bad: Float in [0, -2, .nan, .infinity] {
            let e = try XCTUnwrap(try load(skip: ["rope_freqs.weight"], base: "toy-llama-f32", architecture: .llama) {
                $0.addTensor("rope_freqs.weight", dims: [8], floats: [1, 2, 3, bad, 1, 1, 1, 1])
            }, "factor \(bad) was accepted")
            XCTAssertEqual(e.reason, .badTensor("rope_freqs.weight"))
            XCTAssertTrue(e.description.contains("at 3"), e.description)
        }
        let e = try XCTUnwrap(try load(base: "toy-qwen2-f32", architecture: .qwen2) {
            $0.addTensor("rope_freqs.weight", dims: [8], floats: [Float](repeating: 1, count: 8))
        })
        XCTAssertEqual(e.reason, .badTensor("rope_freqs.weight"))
    }

    func testBiasOfWrongShapeIsNamed() throws {
        let e = try XCTUnwrap(try load(skip: ["blk.0.attn_k.bias"], base: "toy-qwen2-f32", architecture: .qwen2) {
            $0.addTensor("blk.0.attn_k.bias", dims: [64], floats: [Float](repeating: 0, count: 64))
        })
        XCTAssertEqual(e.reason, .badTensor("blk.0.attn_k.bias"))
        XCTAssertTrue(e.description.contains("expected F32 [32]"), e.description)
    }

    func testHostileHeadMetadataIsRefused() throws {
        let cases: [(String, GGUFValue)] = [
            ("qwen3.attention.key_length", .uint64(1 << 40)),
            ("qwen3.attention.key_length", .string("32")),
            ("qwen3.attention.value_length", .uint32(16)),
            ("qwen3.attention.head_count", .uint32(0)),
            ("qwen3.attention.head_count_kv", .uint32(3)),
            ("qwen3.rope.dimension_count", .uint32(16)),
        ]
        for (key, value) in cases {
            let e = try XCTUnwrap(try load { $0.set(key, value) }, "\(key) = \(value) was accepted")
            guard case .badMetadata(let k) = e.reason else { return XCTFail("\(key): \(e)") }
            XCTAssertEqual(k, key, e.description)
        }
    }
}
