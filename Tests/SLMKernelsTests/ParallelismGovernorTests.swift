import XCTest
@testable import SLMKernels

/// The governor's choices on scripted timings (no clocks, no threads): it must stay on all
/// threads when nothing is lost to contention, move to one thread when that is faster
/// under contention, and come back when the contention goes.
final class ParallelismGovernorTests: XCTestCase {
    /// Runs `passes` passes of `tokens` tokens; `timing(solo)` gives (seconds, lost).
    @discardableResult
    func drive(_ g: inout ParallelismGovernor, passes: Int, tokens: Int = 1,
               _ timing: (_ solo: Bool) -> (Double, Double)) -> [Bool] {
        var choices: [Bool] = []
        for _ in 0..<passes {
            let solo = g.shouldRunSolo(tokens: tokens)
            let (s, lost) = timing(solo)
            g.record(tokens: tokens, solo: solo, seconds: s, lost: solo ? 0 : lost)
            choices.append(solo)
        }
        return choices
    }

    func testIdleCoresNeverRunPromptsSolo() {
        var g = ParallelismGovernor()
        // Even if one thread would be faster, nothing is lost to contention, so a prompt's
        // pass never tests solo: its time to first token would double on idle cores.
        let choices = drive(&g, passes: 2000, tokens: 16) { solo in solo ? (0.003, 0) : (0.004, 0.0001) }
        XCTAssertFalse(choices.contains(true))
        XCTAssertEqual(g.soloPasses, 0)
        XCTAssertEqual(g.parallelPasses, 2000)
    }

    func testDecodeStepsTestSoloWithoutStallsAndKeepTheFasterMode() {
        // Idle cores where the second thread pays: solo is tested, loses, and is tested
        // less and less often (after 8, 16, ... up to every 256 passes).
        var g = ParallelismGovernor()
        let idle = drive(&g, passes: 2000) { solo in solo ? (0.006, 0) : (0.0035, 0) }
        let tests = idle.filter { $0 }.count
        XCTAssertGreaterThan(tests, 0, "solo is tested")
        XCTAssertLessThan(Double(tests) / 2000, 0.03, "and costs under 3% of the passes")
        // A shared core where parallel steps are slower yet nothing stalls (a worker
        // descheduled between regions): solo wins its test and keeps nearly every pass.
        var h = ParallelismGovernor()
        let shared = drive(&h, passes: 2000) { solo in solo ? (0.003, 0) : (0.0036, 0) }
        XCTAssertGreaterThan(Double(shared.filter { $0 }.count) / 2000, 0.9)
    }

    func testContentionMovesToOneThreadAndProbesBackLessOften() {
        var g = ParallelismGovernor()
        // Parallel passes lose 40% to a descheduled thread and are slower than solo.
        let choices = drive(&g, passes: 1000) { solo in solo ? (0.003, 0) : (0.005, 0.002) }
        let firstSolo = choices.firstIndex(of: true)!
        XCTAssertLessThanOrEqual(firstSolo, ParallelismGovernor.firstProbeInterval + 1)
        // After the switch, parallel is tried at growing intervals: few parallel passes.
        let later = choices[(firstSolo + 1)...]
        let parallelProbes = later.filter { !$0 }.count
        XCTAssertGreaterThan(parallelProbes, 0, "parallel is re-tested")
        XCTAssertLessThan(parallelProbes, 12 * ParallelismGovernor.probeLength, "and less and less often (tests of probeLength passes)")
        XCTAssertTrue(choices.suffix(ParallelismGovernor.maxProbeInterval / 2).allSatisfy { $0 })
    }

    func testSevereStallsTestSoloAtOnce() {
        // Measured shapes of pp64 at 2 threads beside a busy loop: at equal weight a parallel
        // pass took 114 ms and lost 72 of them, one thread 80 ms. The third pass already
        // tests solo, which wins and keeps the passes.
        var g = ParallelismGovernor()
        let equal = drive(&g, passes: 40, tokens: 64) { solo in solo ? (0.080, 0) : (0.114, 0.072) }
        XCTAssertEqual(Array(equal.prefix(3)), [false, false, true])
        XCTAssertTrue(equal[2..<(2 + ParallelismGovernor.probeLength + ParallelismGovernor.firstProbeInterval)].allSatisfy { $0 })
        // Niced 5 in the same session: 53 ms losing 10, still faster than solo; no early test.
        var h = ParallelismGovernor()
        let niced = drive(&h, passes: ParallelismGovernor.firstProbeInterval, tokens: 64) { solo in
            solo ? (0.080, 0) : (0.053, 0.010)
        }
        XCTAssertFalse(niced.contains(true))
    }

    func testContentionWhereParallelStillWinsStaysParallel() {
        var g = ParallelismGovernor()
        // Prefill under contention: parallel loses 20% yet is still faster than one thread.
        let choices = drive(&g, passes: 1000, tokens: 64) { solo in solo ? (0.100, 0) : (0.070, 0.014) }
        let soloCount = choices.filter { $0 }.count
        XCTAssertGreaterThan(soloCount, 0, "solo is tried")
        XCTAssertLessThan(soloCount, 12 * ParallelismGovernor.probeLength, "and dropped, then tried less and less often")
        XCTAssertFalse(choices.suffix(ParallelismGovernor.maxProbeInterval / 2).contains(true))
    }

    func testBimodalParallelPassesDoNotWinByLuck() {
        var g = ParallelismGovernor()
        // Measured shape beside a niced hog: a parallel step is 3 ms when no thread was
        // descheduled and 7 ms when one was (here every third), solo a steady 3.6 ms. Parallel
        // averages 4.3 ms, so solo should hold nearly all passes; a test of one lucky parallel
        // pass used to switch back every other time.
        var pass = 0
        var total = 0.0
        let choices = drive(&g, passes: 1000) { solo in
            pass += 1
            let s = solo ? 0.0036 : (pass % 3 == 0 ? 0.007 : 0.003)
            total += s
            return (s, s - 0.003)
        }
        XCTAssertGreaterThan(Double(choices.filter { $0 }.count) / 1000, 0.9)
        XCTAssertLessThan(total / 1000, 0.00375)
    }

    func testComesBackWhenContentionEnds() {
        var g = ParallelismGovernor()
        drive(&g, passes: 300) { solo in solo ? (0.003, 0) : (0.005, 0.002) }
        XCTAssertTrue(g.shouldRunSolo(tokens: 1) || g.buckets[0].solo)
        // The other process stops: parallel is now twice as fast as solo.
        let after = drive(&g, passes: 1200) { solo in solo ? (0.003, 0) : (0.0015, 0) }
        // Back on all threads; decode steps still test solo, at most one test in 256 passes.
        XCTAssertFalse(g.buckets[0].solo)
        XCTAssertLessThanOrEqual(after.suffix(ParallelismGovernor.maxProbeInterval).filter { $0 }.count,
                                 ParallelismGovernor.probeLength)
    }

    func testPassSizesAreJudgedSeparately() {
        var g = ParallelismGovernor()
        for _ in 0..<200 {
            for tokens in [1, 64] {
                let solo = g.shouldRunSolo(tokens: tokens)
                // Decode: one thread faster under contention; prefill: parallel faster.
                let (s, lost) = tokens == 1 ? (solo ? 0.003 : 0.005, 0.002) : (solo ? 0.2 : 0.1, 0.02)
                g.record(tokens: tokens, solo: solo, seconds: s, lost: solo ? 0 : lost)
            }
        }
        XCTAssertTrue(g.buckets[ParallelismGovernor.bucket(tokens: 1)].solo)
        XCTAssertFalse(g.buckets[ParallelismGovernor.bucket(tokens: 64)].solo)
    }
}
