import CSLMKernels
import SLMKernels
import XCTest
@testable import SLMModel

/// `weights_layout = repacked` on the real model: the same logits bit for bit as the mapped
/// weights (batched or token by token, 1 or 2 threads), and the memory it costs.
final class RepackedWeightsTests: XCTestCase {
    override func tearDown() { slm_kernels_force(Int32(SLM_PATH_AUTO)) }

    private func lastLogits(_ model: Model, threads: Int, prompt: [Int32], batched: Bool) throws -> [UInt32] {
        let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: threads),
                            maxBatch: 64, maxContext: 128, maxLogits: 1)
        let session = Session(runner: runner, capacity: 128)
        var out: [Float] = []
        if batched {
            out = Array(try session.feed(prompt))
        } else {
            for tok in prompt { out = Array(try session.feed([tok])) }
        }
        return out.map(\.bitPattern)
    }

    func testRepackedLogitsAreBitIdenticalToMapped() throws {
        let path = try ReferenceData.requireModel()
        let mapped = try Model(path: path)
        let repacked = try Model(path: path, weightsLayout: .repacked)
        guard repacked.weights.layout == .repacked else {
            XCTAssertNotEqual(Kernels.preferredLayout, .tile16)
            throw XCTSkip("kernel path \(Kernels.path) reads the row layout: nothing to repack")
        }
        XCTAssertEqual(repacked.weights.output.layout, .tile16)
        XCTAssertEqual(repacked.weights.layers[0].wq.layout, .tile16)
        XCTAssertEqual(mapped.weights.layers[0].wq.layout, .rows)
        let prompt = mapped.tokenizer.encode("The capital of France is Paris, and the capital of Italy is")
        let reference = try lastLogits(mapped, threads: 1, prompt: prompt, batched: false)
        XCTAssertEqual(try lastLogits(mapped, threads: 2, prompt: prompt, batched: true), reference)
        XCTAssertEqual(try lastLogits(repacked, threads: 1, prompt: prompt, batched: false), reference)
        XCTAssertEqual(try lastLogits(repacked, threads: 2, prompt: prompt, batched: true), reference)
        XCTAssertEqual(try lastLogits(repacked, threads: 2, prompt: prompt, batched: false), reference)
        // The same repacked matrices through the other paths' tile16 kernels (AVX2's, and
        // the scalar one of portable-c), against the row layout on the same path.
        for other in [SLM_PATH_AVX2, SLM_PATH_PORTABLE] where slm_kernels_supported(Int32(other)) == 1 {
            XCTAssertEqual(slm_kernels_force(Int32(other)), 1)
            XCTAssertEqual(try lastLogits(repacked, threads: 2, prompt: Array(prompt.prefix(4)), batched: true),
                           try lastLogits(mapped, threads: 2, prompt: Array(prompt.prefix(4)), batched: true), "\(Kernels.path)")
        }
    }

    /// The copy is anonymous memory of about the weights' size, and the mapped originals are
    /// dropped from this process (their pages are not resident through this mapping).
    func testRepackedCostsAnonymousMemoryOfTheWeightsSize() throws {
        let path = try ReferenceData.requireModel()
        let before = MemoryTests.status()
        let repacked = try Model(path: path, weightsLayout: .repacked)
        guard repacked.weights.layout == .repacked else { throw XCTSkip("kernel path \(Kernels.path) reads the row layout") }
        repacked.prefetch()
        let after = MemoryTests.status()
        let anonGrowth = (after.anonKB - before.anonKB) * 1024
        print("repacked: \(repacked.weights.repackedBytes / 1_048_576) MiB copied, RssAnon +\(anonGrowth / 1_048_576) MiB")
        XCTAssertGreaterThan(repacked.weights.repackedBytes, repacked.weightBytes * 9 / 10)
        XCTAssertGreaterThan(anonGrowth, repacked.weights.repackedBytes * 9 / 10)
        // This model's own mapping of the file (the entry holding its output norm): the
        // repacked tensors' pages were dropped from it, and prefetch did not bring them back.
        let probe = Int(bitPattern: repacked.weights.outputNorm)
        // (read to the end by hand: a one-shot read of a /proc file stops after one page)
        let smaps = try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/smaps")).readDataToEndOfFile()
            .withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        var rssKB: Int?, inside = false
        for line in smaps.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.count >= 5, f[0].contains("-"), !f[0].hasSuffix(":") {
                let ends = f[0].split(separator: "-").map { Int($0, radix: 16) ?? 0 }
                inside = ends.count == 2 && ends[0] <= probe && probe < ends[1]
                continue
            }
            if inside, f.first == "Rss:" { rssKB = Int(f[1]) }
        }
        let mappedKB = try XCTUnwrap(rssKB, "no mapping holds the model's tensors")
        print("repacked: this model's file mapping has \(mappedKB / 1024) MiB resident")
        XCTAssertLessThan(mappedKB * 1024, repacked.weightBytes / 10)
        withExtendedLifetime(repacked) {}
    }
}
