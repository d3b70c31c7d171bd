import Foundation
import XCTest
@testable import SLMModel

/// Greedy continuations against llama.cpp (greedy.json): generated ids identical up to
/// the first step where the reference's top-1/top-2 margin falls below 1.0.
final class GreedyReferenceTests: XCTestCase {
    static let marginFloor = 1.0
    static let eog: Set<Int32> = [0, 2, 4]

    func testGreedyContinuationsMatchLlamaCpp() throws {
        let ref = try ReferenceData.json("greedy.json")
        let (_, runner) = try ReferenceData.runner()
        var lines: [String] = []
        for case let c as [String: Any] in ref["cases"] as! [Any] {
            let id = c["id"] as! String
            let prompt = (c["prompt_ids"] as! [Int]).map(Int32.init)
            let expected = (c["generated_ids"] as! [Int]).map(Int32.init)
            let margins = c["top1_minus_top2"] as! [Double]
            // The first step whose margin is too small to demand agreement.
            let mustAgree = margins.firstIndex { $0 < Self.marginFloor } ?? expected.count
            let session = Session(runner: runner, capacity: prompt.count + expected.count + 1)
            var logits = try session.feed(prompt)
            var ours: [Int32] = []
            for _ in 0..<expected.count {
                let t = Sampler.argmax(UnsafeBufferPointer(logits))
                ours.append(t)
                if Self.eog.contains(t) { break }
                logits = try session.feed([t])
            }
            let agree = zip(ours, expected).prefix { $0 == $1 }.count
            XCTAssertGreaterThanOrEqual(agree, mustAgree, "\(id): agrees for \(agree) tokens, must agree for \(mustAgree)")
            lines.append("\(id) \(agree)/\(expected.count) (required \(mustAgree))")
        }
        print("greedy agreement: " + lines.joined(separator: ", "))
    }
}
