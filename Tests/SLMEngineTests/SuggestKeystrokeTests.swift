import XCTest
@testable import SLMEngine
import SLMTestSupport

/// What a typed sentence costs `suggest`, counted (passes and tokens, not time: the counts
/// are deterministic for a given history, so they show a change independent of machine
/// noise), and that the ways a keystroke saves work give exactly the suggestions of a
/// computation from scratch.
final class SuggestKeystrokeTests: XCTestCase {
    /// scripts/bench-keystroke's typing: its context, sentence and options.
    static let context = "Smart thermostat, living room panel. The household usually asks about heating schedules, "
        + "the weather and energy use. Message to the family: "
    static let sentence = "Please turn the heating down tonight"

    func suggest(_ e: Engine, _ prefix: String, _ o: SuggestOptions) throws -> SuggestResult {
        let box = JobBox()
        _ = try e.submitSuggest(prefix: prefix, options: o, completion: box.completion)
        guard case .suggest(let r)? = box.wait() else { XCTFail("no suggest result"); throw CancellationError() }
        return r
    }

    /// The bench's percentile (nearest rank on sorted values).
    func pct(_ xs: [Int], _ q: Double) -> Int {
        let s = xs.sorted()
        return s[min(s.count - 1, Int(((Double(s.count) - 1) * q).rounded()))]
    }

    /// Types the bench sentence one character per request on one engine (warm) and prints
    /// passes and computed tokens per keystroke, p50 and p95, for n = 3 and n = 1: the
    /// machine-independent side of scripts/bench-keystroke. The rows per pass are a path's
    /// token tile (`Runner.rowsPerSweep`: 4 on x86-avx2 and NEON, 8 on x86-avx512vnni), set
    /// here so the counts are the same on any machine. A word's first keystroke (the space)
    /// takes no prefix pass and suggests exactly what an engine that saw only that
    /// keystroke does.
    func testTypingTheBenchSentenceCountsPassesAndTokens() throws {
        for (n, tile) in [(3, 4), (3, 8), (1, 4)] {
            let e = try Shared.engine()
            defer { e.shutdown(grace: 0) }
            e.suggestRowsPerPassLimit = tile
            let o = SuggestOptions(n: n, maxTokens: 4, maxWords: 4)
            _ = try suggest(e, Self.context + "P", o)  // the bench's warm-up request
            var passes: [Int] = [], tokens: [Int] = []
            var lines: [String] = []
            for i in 1...Self.sentence.count {
                let prefix = Self.context + String(Self.sentence.prefix(i))
                let r = try suggest(e, prefix, o)
                XCTAssertEqual(r.suggestions.count, n, "'\(prefix)'")
                passes.append(r.prefixPasses + r.forwardPasses)
                tokens.append(r.computedTokens)
                lines.append("'\(Self.sentence.prefix(i))' \(r.prefixPasses)+\(r.forwardPasses)p \(r.computedTokens)t")
                // A word start (the space after a word): the previous keystrokes' rollouts
                // went through the typed word, so its KV and logits start this one with no
                // prefix pass, and the suggestions are exactly those of an engine that
                // never saw the sentence.
                if prefix.hasSuffix(" ") {
                    XCTAssertEqual(r.prefixPasses, 0, "'\(prefix)'")
                    XCTAssertEqual(r.reusedTokens, r.promptTokens - r.healedTokens, "'\(prefix)'")
                    let fresh = try Shared.engine()
                    defer { fresh.shutdown(grace: 0) }
                    let c = try suggest(fresh, prefix, o)
                    XCTAssertGreaterThan(c.prefixPasses, 0)
                    XCTAssertEqual(r.suggestions, c.suggestions, "'\(prefix)'")
                }
            }
            print("keystroke counts n=\(n) tile \(tile): " + lines.joined(separator: ", "))
            print("keystroke counts n=\(n) tile \(tile): passes p50 \(pct(passes, 0.5)) p95 \(pct(passes, 0.95)) total \(passes.reduce(0, +)); "
                  + "tokens p50 \(pct(tokens, 0.5)) p95 \(pct(tokens, 0.95)) total \(tokens.reduce(0, +))")
            XCTAssertGreaterThan(passes.reduce(0, +), 0)
            XCTAssertEqual(e.stats().kvBytesInUse, 0)
        }
    }

    /// Batching is only a schedule: with one row per pass (every branch step computed
    /// alone, no speculative rows) the typed sentence gets exactly the same suggestions,
    /// in more passes.
    func testBatchedRowsGiveTheSuggestionsOfOneRowPerPass() throws {
        let batched = try Shared.engine(), single = try Shared.engine()
        defer { batched.shutdown(grace: 0); single.shutdown(grace: 0) }
        single.suggestRowsPerPassLimit = 1
        let o = SuggestOptions(n: 3, maxTokens: 4, maxWords: 4)
        var passes = (batched: 0, single: 0), rows = (batched: 0, single: 0)
        for i in 1...Self.sentence.count {
            let prefix = Self.context + String(Self.sentence.prefix(i))
            let a = try suggest(batched, prefix, o), b = try suggest(single, prefix, o)
            XCTAssertEqual(a.suggestions, b.suggestions, "'\(prefix)'")
            XCTAssertEqual(a.suggestions.count, 3, "'\(prefix)'")
            passes.batched += a.forwardPasses
            passes.single += b.forwardPasses
            rows.batched += a.computedTokens
            rows.single += b.computedTokens
        }
        print("bench sentence n=3: batched \(passes.batched) passes \(rows.batched) tokens; one row per pass \(passes.single) passes \(rows.single) tokens")
        XCTAssertLessThan(passes.batched, passes.single)
        XCTAssertEqual(batched.stats().kvBytesInUse, 0)
        XCTAssertEqual(single.stats().kvBytesInUse, 0)
    }
}
