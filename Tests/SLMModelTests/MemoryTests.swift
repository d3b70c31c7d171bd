import Foundation
import SLMKernels
import XCTest
@testable import SLMModel

/// Weights stay file-backed: after loading and generating, the mapped model shows up as
/// RssFile and anonymous memory grows only by the planned KV cache and scratch.
final class MemoryTests: XCTestCase {
    static func status() -> (anonKB: Int, fileKB: Int) {
        let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        var anon = 0, file = 0
        for line in text.split(separator: "\n") {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if f.first == "RssAnon:" { anon = Int(f[1]) ?? 0 }
            if f.first == "RssFile:" { file = Int(f[1]) ?? 0 }
        }
        return (anon, file)
    }

    func testWeightsAreFileBackedAndAnonymousMemoryIsPlanned() throws {
        let before = Self.status()
        let model = try Model(path: try ReferenceData.requireModel())
        let ctx = 2048
        let runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: 2),
                            maxBatch: 32, maxContext: ctx, maxLogits: 1)
        let session = Session(runner: runner, capacity: ctx)
        let prompt = model.tokenizer.encode("The capital of France is")
        let out = try Generator.run(model: model, session: session, promptIDs: prompt,
                                    options: GenerationOptions(maxTokens: 128, sampling: .greedy),
                                    now: { 0 })
        let after = Self.status()
        let anonGrowth = (after.anonKB - before.anonKB) * 1024
        let planned = runner.scratchBytes + session.cache.bytes
        print("memory: RssAnon \(after.anonKB / 1024) MiB, +\(anonGrowth / 1_048_576) MiB (planned KV \(session.cache.bytes / 1_048_576) MiB + scratch \(runner.scratchBytes / 1_048_576) MiB), RssFile \(after.fileKB / 1024) MiB, weights \(model.weightBytes / 1_048_576) MiB, generated \(out.generatedIDs.count)")
        // The tokenizer's tables are the only other anonymous allocation of note (~10 MiB).
        XCTAssertLessThan(anonGrowth, planned + 24 << 20, "anonymous memory grew beyond the plan: weights copied?")
        // Every weight page was read during generation, and it is file-backed.
        XCTAssertGreaterThan(after.fileKB * 1024, model.weightBytes * 9 / 10)
    }
}
