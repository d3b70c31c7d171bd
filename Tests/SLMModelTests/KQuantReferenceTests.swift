import Foundation
import GGUF
import SLMKernels
import SLMTestSupport
import XCTest
@testable import SLMModel

/// The default model re-quantized by llama.cpp to Q4_K_M, Q5_K_M, Q6_K, Q5_0 and Q5_1
/// (scripts/fetch-kquant-models, in the model cache) against llama.cpp's outputs on the same
/// files (kquants.json, scripts/make-kquant-reference): dequantized rows bit for bit, top-20
/// logits within 1.5 (same top-1 where llama.cpp's margin exceeds 1.0) and perplexity (first
/// 16 chunks at n_ctx 128) within 1%.
final class KQuantReferenceTests: XCTestCase {
    struct Fixture: Decodable {
        struct Row: Decodable {
            let tensor: String, type: String, row: Int, cols: Int
            let fnv1a64_f32le: String
            let first8: [Float]
        }
        struct Case: Decodable {
            struct Step: Decodable { let step: Int; let top20: [[Double]] }
            let id: String
            let prompt_ids: [Int32]
            let generated_ids: [Int32]
            let steps: [Step]
        }
        struct PPL: Decodable { let ppl: Double; let chunks: Int; let ppl_flash_attn_off: Double }
        struct Spread: Decodable { let max_abs_dlogit_top20: Float; let ppl_relative: Double }
        struct Model: Decodable {
            let preset: String, file: String, bytes: Int
            let tensor_types: [String: Int]
            let dequant: [Row]
            let logits: [Case]
            let perplexity_c128: PPL
            let llama_cpp_spread: Spread
        }
        let models: [Model]
    }

    /// |Δlogit| bound on the top-20. Wider than the 1.0 of the Q4_1 reference: these files were
    /// re-quantized from Q4_1 and are more sensitive; llama.cpp against itself (flash attention
    /// off vs on) moves their top-20 by up to 1.56 (`llama_cpp_spread` in the fixture). The K
    /// types also see finer activations here (32-element Q8 blocks, not llama.cpp's 256-element
    /// q8_K). Measured (AMD EPYC, AVX-512 VNNI, 2026-11-28): quantizing the K matmuls'
    /// activations as q8_K instead (an experiment) gives Q4_K_M 1.45 → 0.73, Q6_K 1.09 → 0.69,
    /// Q5_K_M 1.26 → 1.21, while Q5_0, whose activations are already llama.cpp's, is at 1.04:
    /// on these files the floor left by attention and K/V rounding is about 1.0-1.2.
    static let logitTolerance: Float = 1.5
    /// Top-1 must agree wherever llama.cpp's margin exceeds this.
    static let top1Margin: Float = 1.0
    static let pplTolerance = 0.01

    func fixture() throws -> Fixture { try loadReferenceJSON("kquants.json", as: Fixture.self) }

    /// The cached file for a fixture entry; a missing or different file is a failure that says
    /// how to make it.
    func open(_ m: Fixture.Model) throws -> SLMModel.Model {
        let path = URL(fileURLWithPath: TestModel.path).deletingLastPathComponent().path + "/kquants/" + m.file
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw ReferenceData.Missing(description: "\(path) not found: run scripts/fetch-kquant-models")
        }
        XCTAssertEqual((attrs[.size] as? NSNumber)?.intValue, m.bytes, "\(path) is not the file kquants.json was made from")
        return try SLMModel.Model(path: path)
    }

    static func fnv1a64(_ p: UnsafeRawBufferPointer) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    func testFilesMixTheTypesAndDequantizeLikeLlamaCpp() throws {
        var typesSeen = Set<String>()
        for m in try fixture().models {
            let model = try open(m)
            var counts: [String: Int] = [:]
            for t in model.file.tensors { counts[t.type.name, default: 0] += 1 }
            XCTAssertEqual(counts, m.tensor_types, m.preset)
            for r in m.dequant {
                let t = try XCTUnwrap(model.file.tensor(named: r.tensor), "\(m.preset): \(r.tensor)")
                let type = try XCTUnwrap(WeightType(rawValue: t.type.rawValue))
                XCTAssertEqual(type.description, r.type)
                let w = try WeightMatrix(base: t.data, type: type, rows: t.dims[1], cols: t.dims[0])
                var out = [Float](repeating: .nan, count: r.cols)
                Dequantize.row(w, r.row, into: &out)
                XCTAssertEqual(Array(out.prefix(8)), r.first8, "\(m.preset) \(r.tensor) row \(r.row)")
                XCTAssertEqual(out.withUnsafeBytes(Self.fnv1a64), r.fnv1a64_f32le, "\(m.preset) \(r.tensor) row \(r.row)")
                typesSeen.insert(r.type)
            }
        }
        XCTAssertEqual(typesSeen, ["Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"])
    }

    func testTop20LogitsMatchLlamaCpp() throws {
        var report: [String] = []
        for m in try fixture().models {
            let model = try open(m)
            let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                                maxBatch: 64, maxContext: 256, maxLogits: 64)
            var worst: Float = 0, greedySame = 0, greedyTotal = 0
            for c in m.logits {
                let session = Session(runner: runner, capacity: 128)
                var logits = try session.feed(c.prompt_ids)
                for (k, step) in c.steps.enumerated() {
                    let top = step.top20.map { (Int($0[0]), Float($0[1])) }
                    var maxDiff: Float = 0
                    for (tok, l) in top { maxDiff = max(maxDiff, abs(logits[tok] - l)) }
                    let ours = Sampler.argmax(UnsafeBufferPointer(logits))
                    if top[0].1 - top[1].1 > Self.top1Margin {
                        XCTAssertEqual(Int(ours), top[0].0, "\(m.preset) \(c.id) step \(k): top-1 differs")
                    }
                    XCTAssertLessThanOrEqual(maxDiff, Self.logitTolerance, "\(m.preset) \(c.id) step \(k)")
                    worst = max(worst, maxDiff)
                    greedyTotal += 1
                    guard ours == c.generated_ids[k] else { break }
                    greedySame += 1
                    guard k + 1 < c.steps.count else { break }
                    logits = try session.feed([c.generated_ids[k]])
                }
            }
            report.append(String(format: "%@: max |Δlogit| %.2f (llama.cpp FA off vs on %.2f), greedy %d/%d", m.preset,
                                 worst, m.llama_cpp_spread.max_abs_dlogit_top20, greedySame, greedyTotal))
        }
        print("kquant logits: " + report.joined(separator: "; "))
    }

    func testPerplexityMatchesLlamaCpp() throws {
        let text = try PerplexityText.load()
        var bytes = [UInt8](try Data(contentsOf: text.url))
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }  // llama-perplexity -f strips one
        var report: [String] = []
        for m in try fixture().models {
            let model = try open(m)
            let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                                maxBatch: 128, maxContext: 128, maxLogits: 128)
            let ids = model.tokenizer.encode(String(decoding: bytes, as: UTF8.self), parseSpecial: false)
            // The fixture scores the first `chunks` chunks (llama-perplexity --chunks; each chunk
            // is evaluated on its own, so a prefix of the text is the same computation).
            let r = try Perplexity.evaluate(runner: runner, tokens: Array(ids.prefix(m.perplexity_c128.chunks * 128)),
                                            context: 128)
            XCTAssertEqual(r.chunks, m.perplexity_c128.chunks)
            let rel = abs(r.ppl - m.perplexity_c128.ppl) / m.perplexity_c128.ppl
            XCTAssertLessThanOrEqual(rel, Self.pplTolerance, m.preset)
            report.append(String(format: "%@ %.4f vs %.4f (%.3f%%; llama.cpp FA off vs on %.3f%%)", m.preset, r.ppl,
                                 m.perplexity_c128.ppl, rel * 100, m.llama_cpp_spread.ppl_relative * 100))
        }
        print("kquant perplexity c128 (ours vs llama.cpp): " + report.joined(separator: "; "))
    }

    /// `weights_layout = repacked` copies only the types the path has tile16 kernels for: in
    /// the Q4_K_M file all of them (Q5_0, Q8_0, Q4_K, Q6_K); in the Q5_1 file its Q5_1
    /// tensors (Q5_1 adds the min term to the Q5 kernels).
    /// The logits are bit-identical to the mapped load's.
    func testRepackedFilesGiveTheSameLogits() throws {
        for (preset, q5) in [("Q4_K_M", WeightType.q5_0), ("Q5_1", .q5_1)] {
            let m = try XCTUnwrap(try fixture().models.first { $0.preset == preset })
            let mapped = try open(m)
            let path = URL(fileURLWithPath: TestModel.path).deletingLastPathComponent().path + "/kquants/" + m.file
            let repacked = try SLMModel.Model(path: path, weightsLayout: .repacked)
            if Kernels.preferredLayout == .tile16 {
                XCTAssertEqual(repacked.weights.layout, .repacked)
                let all = [repacked.weights.output] + repacked.weights.layers.flatMap {
                    [$0.wq, $0.wk, $0.wv, $0.wo, $0.wGate, $0.wUp, $0.wDown]
                }
                for w in all { XCTAssertEqual(w.layout, Kernels.prefersTile16(w.type) ? .tile16 : .rows, "\(preset) \(w.type)") }
                XCTAssertTrue(all.contains { $0.type == q5 && $0.layout == .tile16 }, "\(preset): the \(q5) tensors are repacked")
                if preset == "Q4_K_M" {
                    XCTAssertEqual(repacked.weights.output.layout, .tile16)  // the tied Q8_0 embedding
                    XCTAssertTrue(all.contains { $0.type == .q6_K }, "the file has Q6_K tensors")
                    XCTAssertTrue(all.contains { $0.type == .q4_K }, "the file has Q4_K tensors")
                }
            }
            var out: [[Float]] = []
            for model in [mapped, repacked] {
                let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                                    maxBatch: 64, maxContext: 128, maxLogits: 64)
                let session = Session(runner: runner, capacity: 64)
                _ = try session.feed(m.logits[0].prompt_ids)
                out.append(Array(try session.feed([m.logits[0].generated_ids[0]])))
            }
            XCTAssertEqual(out[0].map(\.bitPattern), out[1].map(\.bitPattern), preset)
        }
    }

    /// A type the kernels do not know is refused naming the tensor and the type.
    func testUnknownTypeIsRefusedByName() throws {
        let m = try XCTUnwrap(try fixture().models.first)
        let path = URL(fileURLWithPath: TestModel.path).deletingLastPathComponent().path + "/kquants/" + m.file
        guard FileManager.default.fileExists(atPath: path) else { throw ReferenceData.Missing(description: "\(path): run scripts/fetch-kquant-models") }
        // Rewrite blk.0.ffn_down.weight's type id in a copy of the header to Q2_K (10).
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let file = try GGUFFile(path: path)
        let t = try XCTUnwrap(file.tensor(named: "blk.0.ffn_down.weight"))
        let name = Array("blk.0.ffn_down.weight".utf8)
        let at = try XCTUnwrap(data.firstRange(of: Data(name))).upperBound
        let typeOffset = at + 4 + 8 * t.dims.count  // n_dims u32, dims u64...
        XCTAssertEqual(data[typeOffset], UInt8(t.type.rawValue))
        data[typeOffset] = 10
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("kq-unknown-\(getpid()).gguf")
        try data.write(to: tmp)
        defer { try? FileManager.default.removeItem(at: tmp) }
        XCTAssertThrowsError(try SLMModel.Model(path: tmp.path)) { error in
            let s = "\(error)"
            XCTAssertTrue(s.contains("blk.0.ffn_down.weight") && s.contains("Q2_K"), s)
        }
    }
}
