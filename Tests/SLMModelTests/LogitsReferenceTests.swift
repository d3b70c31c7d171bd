import Foundation
import XCTest
@testable import SLMModel

/// Logits against llama.cpp's top-20 (logits.json): same top-1 where the margin is clear,
/// |Δlogit| ≤ 1.0 on the reference's top-20 ids, for step 0 and later steps while the
/// greedy paths agree.
final class LogitsReferenceTests: XCTestCase {
    static let tolerance: Float = 1.0

    func testTop20LogitsMatchLlamaCpp() throws {
        let ref = try ReferenceData.json("logits.json")
        let (_, runner) = try ReferenceData.runner()
        var worst: Float = 0
        var worstStep0: Float = 0
        var report: [String] = []
        for case let c as [String: Any] in ref["cases"] as! [Any] {
            let id = c["id"] as! String
            let prompt = (c["prompt_ids"] as! [Int]).map(Int32.init)
            let refPath = (c["generated_ids_first_8"] as! [Int]).map(Int32.init)
            let steps = c["steps"] as! [[String: Any]]
            let session = Session(runner: runner, capacity: 256)
            var logits = try session.feed(prompt)
            var agreedSteps = 0
            var diffs: [String] = []
            for (k, step) in steps.enumerated() {
                let top = (step["top20"] as! [[Double]]).map { (Int($0[0]), Float($0[1])) }
                var maxDiff: Float = 0
                for (tok, l) in top { maxDiff = max(maxDiff, abs(logits[tok] - l)) }
                let ours = Sampler.argmax(UnsafeBufferPointer(logits))
                let margin = top[0].1 - top[1].1
                if margin > Self.tolerance {
                    XCTAssertEqual(Int(ours), top[0].0, "\(id) step \(k): top-1 differs (margin \(margin))")
                }
                XCTAssertLessThanOrEqual(maxDiff, Self.tolerance, "\(id) step \(k): max |Δlogit| \(maxDiff)")
                worst = max(worst, maxDiff)
                diffs.append(String(format: "%.2f", maxDiff))
                if k == 0 { worstStep0 = max(worstStep0, maxDiff) }
                agreedSteps = k + 1
                // Later steps only while our greedy path is the reference's.
                guard k < refPath.count, ours == refPath[k], k + 1 < steps.count else { break }
                logits = try session.feed([refPath[k]])
            }
            report.append("\(id): \(agreedSteps) steps, max |Δ| per step [\(diffs.joined(separator: " "))]")
        }
        print("logits: max |Δ| step0 \(worstStep0), all steps \(worst); " + report.joined(separator: "; "))
    }
}
