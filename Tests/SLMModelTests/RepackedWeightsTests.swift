import CSLMKernels
import SLMKernels
import SLMTestSupport
import XCTest
@testable import GGUF
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

    /// A cache file built from pieces that do not line up with its 2 MiB write units, with
    /// gaps between them, maps back as exactly those pieces and zeros (written through the
    /// staging buffer, flushed several times), and is reused as is.
    func testCacheFileFromPiecesMapsBackTheSameBytes() throws {
        let dir = NSTemporaryDirectory() + "slmd-pieces-" + String(getpid())
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = TestRNG(seed: 31)
        var pieces: [RepackedStorage.Piece] = []
        var offset = 0
        while offset < 20 << 20 {
            let size = Int.random(in: 1...(3 << 20), using: &rng), at = offset + Int.random(in: 0...64, using: &rng)
            pieces.append(.init(offset: at, byteCount: size) { dst in
                for i in 0..<size { dst.storeBytes(of: UInt8(truncatingIfNeeded: (at + i) &* 40503 >> 5), toByteOffset: i, as: UInt8.self) }
            })
            offset = at + size
        }
        let total = offset + 100
        var expected = [UInt8](repeating: 0, count: total)
        for p in pieces { for i in 0..<p.byteCount { expected[p.offset + i] = UInt8(truncatingIfNeeded: (p.offset + i) &* 40503 >> 5) } }
        let source = FileIdentity(device: 1, inode: 2, size: 3, mtimeNanoseconds: 4)
        for reuse in [false, true] {
            let storage = try RepackedStorage(cacheFile: dir + "/pieces.tile16", byteCount: total, source: source, digest: 5,
                                              pieces: pieces)
            XCTAssertEqual(storage.cacheHit, reuse)
            XCTAssertEqual(expected.withUnsafeBytes { memcmp(storage.base, $0.baseAddress!, total) }, 0, "reuse \(reuse)")
        }
    }
}
