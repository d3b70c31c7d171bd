import XCTest
@testable import SLMModel

final class SamplerTests: XCTestCase {
    func withLogits(_ values: [Float], _ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        var v = values
        v.withUnsafeMutableBufferPointer { body($0) }
    }

    func testGreedyTakesArgmaxWithTiesToLowestId() {
        let s = Sampler(params: .greedy, vocabSize: 5)
        withLogits([1, 3, 3, 2, -1]) { XCTAssertEqual(s.sample($0), 1) }
        withLogits([-5, -4, -9, -4, -6]) { XCTAssertEqual(s.sample($0), 1) }
    }

    func testSameSeedSameOutput() {
        let logits: [Float] = (0..<100).map { Float($0 % 7) * 0.3 }
        func draw(seed: UInt64) -> [Int32] {
            let s = Sampler(params: SamplingParams(temperature: 1, topK: 0, topP: 1, minP: 0, seed: seed), vocabSize: 100)
            return (0..<50).map { _ in
                var l = logits
                return l.withUnsafeMutableBufferPointer { s.sample($0) }
            }
        }
        XCTAssertEqual(draw(seed: 7), draw(seed: 7))
        XCTAssertNotEqual(draw(seed: 7), draw(seed: 8))
    }

    func testTopKLimitsCandidates() {
        let s = Sampler(params: SamplingParams(temperature: 5, topK: 2, topP: 1, minP: 0, seed: 1), vocabSize: 6)
        var seen = Set<Int32>()
        for _ in 0..<300 { withLogits([0, 5, 1, 4.9, 2, 0]) { seen.insert(s.sample($0)) } }
        XCTAssertEqual(seen, [1, 3])
    }

    func testTopPAndMinP() {
        // p = softmax([10, 9, 0, ...]) ≈ [0.73, 0.27, ~0]: top-p 0.5 keeps only the first.
        let p = Sampler(params: SamplingParams(temperature: 1, topK: 0, topP: 0.5, minP: 0, seed: 3), vocabSize: 4)
        for _ in 0..<100 { withLogits([10, 9, 0, 0]) { XCTAssertEqual(p.sample($0), 0) } }
        // min-p 0.5: token 1 (0.37 of the best) is dropped, so only 0 remains.
        let m = Sampler(params: SamplingParams(temperature: 1, topK: 0, topP: 1, minP: 0.5, seed: 3), vocabSize: 4)
        for _ in 0..<100 { withLogits([10, 9, 0, 0]) { XCTAssertEqual(m.sample($0), 0) } }
        // Without the filters both appear.
        let none = Sampler(params: SamplingParams(temperature: 1, topK: 0, topP: 1, minP: 0, seed: 3), vocabSize: 4)
        var seen = Set<Int32>()
        for _ in 0..<200 { withLogits([10, 9, 0, 0]) { seen.insert(none.sample($0)) } }
        XCTAssertTrue(seen.isSuperset(of: [0, 1]))
    }

    func testRepetitionPenaltyFollowsLlamaRule() {
        let s = Sampler(params: SamplingParams(temperature: 0, repeatPenalty: 2, repeatWindow: 2), vocabSize: 4)
        var l: [Float] = [4, -2, 3, 1]
        l.withUnsafeMutableBufferPointer { s.applyPenalty($0, recent: [0, 0, 1][...]) }
        XCTAssertEqual(l, [2, -4, 3, 1])  // 0 penalised once despite repeating; window excludes nothing else
        var l2: [Float] = [4, -2, 3, 1]
        l2.withUnsafeMutableBufferPointer { s.applyPenalty($0, recent: [0, 2, 3][...]) }
        XCTAssertEqual(l2, [4, -2, 1.5, 0.5])  // window of 2: only 2 and 3
    }

    func testInvalidParamsAreNamed() {
        XCTAssertNotNil(SamplingParams(temperature: -1).invalidField)
        XCTAssertNotNil(SamplingParams(topP: 0).invalidField)
        XCTAssertNotNil(SamplingParams(minP: 2).invalidField)
        XCTAssertNotNil(SamplingParams(repeatPenalty: 0).invalidField)
        XCTAssertNil(SamplingParams().invalidField)
    }

    func testStopMatcherHoldsBackPartialStops() {
        var m = StopMatcher(stops: ["END", "\n\n"])
        XCTAssertEqual(m.push("hello E").emit, "hello ")
        XCTAssertEqual(m.push("N").emit, "")
        let r = m.push("D more")
        XCTAssertEqual(r.emit, "")
        XCTAssertTrue(r.stopped)
        var n = StopMatcher(stops: ["END"])
        XCTAssertEqual(n.push("EN").emit, "")
        XCTAssertEqual(n.push("x").emit, "ENx")
        XCTAssertEqual(n.push("E").emit, "")
        XCTAssertEqual(n.flush(), "E")
        var p = StopMatcher(stops: ["\n\n"])
        let a = p.push("line\n")
        XCTAssertEqual(a.emit, "line")
        let b = p.push("\nnext")
        XCTAssertTrue(b.stopped)
        XCTAssertEqual(b.emit, "")
        var none = StopMatcher(stops: [])
        XCTAssertEqual(none.push("abc").emit, "abc")
    }
}
