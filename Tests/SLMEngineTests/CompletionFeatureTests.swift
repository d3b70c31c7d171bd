import Foundation
import Logging
import SLMKernels
import SLMModel
import XCTest
@testable import SLMEngine
import SLMTestSupport

/// Box for a job's outcome, filled on the engine thread.
final class JobBox: @unchecked Sendable {
    private let cond = NSCondition()
    private var outcome: JobOutcome?
    var completion: @Sendable (JobOutcome) -> Void {
        { [self] o in cond.lock(); outcome = o; cond.broadcast(); cond.unlock() }
    }
    func wait(_ timeout: Double = 60) -> JobOutcome? {
        cond.lock(); defer { cond.unlock() }
        let end = Date(timeIntervalSinceNow: timeout)
        while outcome == nil { if !cond.wait(until: end) { break } }
        return outcome
    }
}

/// Prefix cache, sessions/supersede, suggest and choose (the device-UI features).
final class CompletionFeatureTests: XCTestCase {
    func engine(_ edit: (inout EngineConfig) -> Void = { _ in }) throws -> Engine { try Shared.engine(edit) }

    func greedy(_ ids: [Int32], _ n: Int, session: String? = nil) -> GenerationRequest {
        GenerationRequest(promptIDs: ids, options: GenerationOptions(maxTokens: n, sampling: .greedy), session: session)
    }

    /// A request whose prompt starts like an earlier one reuses its KV, and the output is
    /// exactly what a cold run gives.
    func testPrefixCacheGivesIdenticalOutputAndIsReused() throws {
        let m = try Shared.requireModel()
        let context = m.tokenizer.encode("<|im_start|>system\nYou complete the user's sentence.<|im_end|>\n<|im_start|>user\nThe weather today is")
        let cold = try engine { $0.prefixCacheEntries = 0 }
        let warm = try engine()
        defer { cold.shutdown(grace: 0); warm.shutdown(grace: 0) }
        var prompts: [[Int32]] = []
        for extra in ["", " sunny", " sunny and", " sunny and warm"] {
            prompts.append(context + m.tokenizer.encode(extra).filter { _ in !extra.isEmpty })
        }
        for p in prompts {
            let a = Collector(), b = Collector()
            _ = try cold.submit(greedy(p, 12), sink: a.sink)
            _ = try warm.submit(greedy(p, 12), sink: b.sink)
            XCTAssertEqual(a.wait()?.generatedIDs, b.wait()?.generatedIDs)
        }
        let s = warm.stats()
        XCTAssertGreaterThanOrEqual(s.prefixCacheHits, 3)
        XCTAssertGreaterThanOrEqual(s.prefixCacheReusedTokens, 3 * context.count)
        XCTAssertEqual(cold.stats().prefixCacheHits, 0)
        XCTAssertGreaterThan(s.prefixCacheBytes, 0)
        XCTAssertEqual(s.kvBytesInUse, 0)
    }

    /// Requests that share only a prefix with a cached sequence each reuse it, even when
    /// they arrive together: the first copies the prefix instead of taking the entry over,
    /// so it is still there for the others. Output is what a cold run gives.
    func testConcurrentRequestsSharingAPrefixAllReuseIt() throws {
        let m = try Shared.requireModel()
        let system = m.tokenizer.encode("<|im_start|>system\nYou complete the user's sentence.<|im_end|>\n<|im_start|>user\n")
        let e = try engine { $0.maxSequences = 4 }
        let cold = try engine { $0.prefixCacheEntries = 0 }
        defer { e.shutdown(grace: 0); cold.shutdown(grace: 0) }
        let first = Collector()
        // 40 tokens: a cached sequence with room for each of the later requests (one without
        // room is copied from in any case).
        _ = try e.submit(greedy(system + m.tokenizer.encode("The weather today is"), 40), sink: first.sink)
        XCTAssertNotNil(first.wait())
        let hits = e.stats().prefixCacheHits, reused = e.stats().prefixCacheReusedTokens
        let endings = ["My favourite colour is", "Tomorrow I will", "The best food is"]
        let warm = endings.map { _ in Collector() }
        for (text, c) in zip(endings, warm) { _ = try e.submit(greedy(system + m.tokenizer.encode(text), 6), sink: c.sink) }
        for (text, c) in zip(endings, warm) {
            let ref = Collector()
            _ = try cold.submit(greedy(system + m.tokenizer.encode(text), 6), sink: ref.sink)
            XCTAssertEqual(c.wait()?.generatedIDs, ref.wait()?.generatedIDs, text)
        }
        XCTAssertEqual(e.stats().prefixCacheHits, hits + 3)
        XCTAssertGreaterThanOrEqual(e.stats().prefixCacheReusedTokens, reused + 3 * system.count)
        XCTAssertEqual(e.stats().kvBytesInUse, 0)
    }

    /// The cache never exceeds the budget: entries are evicted least recently used first.
    func testPrefixCacheStaysInBudgetAndEvictsLRU() throws {
        let m = try Shared.requireModel()
        let perToken = KVCache.bytes(config: m.config, capacity: 1)
        var c = EngineConfig(); c.threads = 2; c.maxContext = 512; c.maxTokens = 256
        let budget = Engine.scratchBytes(model: m.config, config: c) + perToken * 200
        let e = try engine { $0.memoryBudgetBytes = budget }
        defer { e.shutdown(grace: 0) }
        let a = m.tokenizer.encode(String(repeating: "alpha ", count: 20))
        let b = m.tokenizer.encode(String(repeating: "beta ", count: 20))
        let cc = m.tokenizer.encode(String(repeating: "gamma ", count: 20))
        for p in [a, b, a, cc, a] {
            let col = Collector()
            _ = try e.submit(greedy(p, 40), sink: col.sink)
            XCTAssertNotNil(col.wait())
            let s = e.stats()
            XCTAssertLessThanOrEqual(s.scratchBytes + s.kvBytesInUse + s.prefixCacheBytes, budget)
        }
        // a was used most recently (and reused each time), so it survived; b was evicted.
        let before = e.stats().prefixCacheHits
        let col = Collector()
        _ = try e.submit(greedy(a, 4), sink: col.sink)
        _ = col.wait()
        XCTAssertEqual(e.stats().prefixCacheHits, before + 1)
    }

    func testSupersedeCancelsPreviousAndReusesItsPrefix() throws {
        let m = try Shared.requireModel()
        let e = try engine { $0.maxSequences = 2 }
        defer { e.shutdown(grace: 0) }
        let ids = m.tokenizer.encode("Once upon a time")
        let first = Collector()
        _ = try e.submit(greedy(ids, 200, session: "ui-1"), sink: first.sink)
        while first.deltaCount < 2 { usleep(1000) }
        let hitsBefore = e.stats().prefixCacheHits
        let second = Collector()
        let seen = first.deltaCount
        _ = try e.submit(greedy(ids + m.tokenizer.encode(" there"), 4, session: "ui-1"), sink: second.sink)
        let done1 = try XCTUnwrap(first.wait(timeout: 30))
        XCTAssertEqual(done1.finishReason, .superseded)
        XCTAssertLessThanOrEqual(done1.generatedTokens, seen + 2, "superseded within a step")
        XCTAssertNotNil(second.wait())
        XCTAssertEqual(e.stats().prefixCacheHits, hitsBefore + 1, "the new request reused the superseded one's KV")
        XCTAssertEqual(e.stats().finished[.superseded], 1)
        XCTAssertEqual(e.stats().kvBytesInUse, 0)
    }

    func suggest(_ e: Engine, _ prefix: String, _ o: SuggestOptions = SuggestOptions()) throws -> SuggestResult {
        let box = JobBox()
        _ = try e.submitSuggest(prefix: prefix, options: o, completion: box.completion)
        guard case .suggest(let r)? = box.wait() else { XCTFail("no suggest result"); throw CancellationError() }
        return r
    }

    /// log P(suggestion | typed text) the long way, one plain pass per token: the first
    /// token's probability renormalised over every vocabulary token that agrees with the
    /// healed bytes (a non-control token whose bytes start with them; with none, one that
    /// does not start with whitespace), the others' as they are, and in word mode the
    /// probability that the token after the word does not continue it.
    func bruteForceLogprob(_ e: Engine, prefix: String, _ o: SuggestOptions, _ s: Suggestion) throws -> Double {
        let m = try Shared.requireModel()
        let tok = m.tokenizer
        let (context, heal, _, _) = e.suggestContext(prefix: prefix, o)
        let runner = Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: 1), maxBatch: 64,
                            maxContext: context.count + s.tokens.count + 1, maxLogits: 1)
        let session = Session(runner: runner, capacity: context.count + s.tokens.count + 1)
        let bytes = (0..<m.config.vocabSize).map { tok.tokenBytes(Int32($0)) }
        func logMass(_ l: [Float], _ keep: (Int) -> Bool) -> Double {
            let top = Double(l.max()!)
            return top + log(l.indices.reduce(0.0) { keep($1) ? $0 + exp(Double(l[$1]) - top) : $0 })
        }
        let space: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
        let agrees = { (t: Int) -> Bool in
            !tok.isControl(Int32(t)) && (heal.isEmpty ? !space.contains(bytes[t].first ?? 0x20) : bytes[t].starts(with: heal))
        }
        var logits = Array(try session.feed(context))
        var lp = Double(logits[Int(s.tokens[0])]) - logMass(logits, agrees)
        for (i, t) in s.tokens.enumerated() {
            if i > 0 { lp += Double(logits[Int(t)]) - logMass(logits, { _ in true }) }
            logits = Array(try session.feed([t]))
        }
        if o.mode == .word {
            // Letters, digits, an apostrophe or any non-ASCII byte continue a word.
            let continues = { (t: Int) -> Bool in
                guard !tok.isControl(Int32(t)), let b = bytes[t].first else { return false }
                return (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) || b >= 0x80 || b == 0x27
            }
            lp += logMass(logits, { !continues($0) }) - logMass(logits, { _ in true })
        }
        return lp
    }

    /// Asking for n gets n, whether the typed text ends inside a word, with a whole word
    /// (whose only first token is that word) or after a space; each suggestion's `prob` is
    /// P(suggestion | typed text), and they come best first.
    func testNDistinctSuggestionsWithTheirConditionalProbability() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let sentence = "Remind me to call my mother "
        let o = SuggestOptions(n: 3)
        for prefix in [sentence + "tom", sentence + "tomor", sentence + "tomorrow", sentence + "tomorrow ",
                       sentence + "tomorrow.", "Please turn off the"] {
            let r = try suggest(e, prefix, o)
            XCTAssertEqual(r.suggestions.count, 3, "'\(prefix)': \(r.suggestions.map(\.text))")
            XCTAssertEqual(Set(r.suggestions.map { suggestionKey($0.text) }).count, r.suggestions.count, "distinct")
            XCTAssertEqual(r.suggestions.map(\.logprob), r.suggestions.map(\.logprob).sorted(by: >), "best first")
            for s in r.suggestions {
                XCTAssertLessThanOrEqual(wordCount(Array(s.text.utf8)), o.maxWords)
                XCTAssertLessThanOrEqual(s.tokens.count, o.maxTokens)
                XCTAssertEqual(s.logprob, try bruteForceLogprob(e, prefix: prefix, o, s), accuracy: 1e-3, "'\(prefix)' + '\(s.text)'")
                XCTAssertGreaterThanOrEqual(s.probability, o.minProb)
            }
            print("'\(prefix)' → \(r.suggestions.map { "\($0.text) (\($0.probability))" })")
        }
        // More than three, after a complete word.
        let five = try suggest(e, sentence + "tomorrow", SuggestOptions(n: 5))
        XCTAssertEqual(five.suggestions.count, 5, "\(five.suggestions.map(\.text))")
        XCTAssertEqual(e.stats().kvBytesInUse, 0)
    }

    /// The floor: nothing less probable than `minProb` is suggested, so a high one returns
    /// fewer than n, and 0 none fewer.
    func testMinProbIsAFloorOnTheConditionalProbability() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let prefix = "Remind me to call my mother tomorrow "
        let high = try suggest(e, prefix, SuggestOptions(n: 8, minProb: 0.02))
        XCTAssertFalse(high.suggestions.isEmpty)
        XCTAssertLessThan(high.suggestions.count, 8)
        XCTAssertTrue(high.suggestions.allSatisfy { $0.probability >= 0.02 })
        XCTAssertEqual(try suggest(e, prefix, SuggestOptions(n: 8, minProb: 0)).suggestions.count, 8)
        // Nothing at all above a floor of 1 (the best suggestion is below certainty).
        XCTAssertEqual(try suggest(e, prefix, SuggestOptions(n: 3, minProb: 1)).suggestions.count, 0)
        XCTAssertThrowsError(try e.submitSuggest(prefix: prefix, options: SuggestOptions(minProb: 1.5)) { _ in })
    }

    /// Word mode: the rest of the word being typed (or the next word after a space), n
    /// different words, each with the probability that the word is exactly it.
    func testWordModeCompletesTheCurrentWordOrPredictsTheNext() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let o = SuggestOptions(n: 3, mode: .word)
        for prefix in ["Remind me to call my mother tom", "Please turn the heating down toni", "Remind me to call my mother "] {
            let r = try suggest(e, prefix, o)
            XCTAssertEqual(r.suggestions.count, 3, "'\(prefix)': \(r.suggestions.map(\.text))")
            XCTAssertEqual(Set(r.suggestions.map(\.text)).count, 3)
            for s in r.suggestions {
                XCTAssertFalse(s.text.contains(" "), "one word: '\(s.text)'")
                XCTAssertFalse(s.text.isEmpty)
                XCTAssertEqual(s.logprob, try bruteForceLogprob(e, prefix: prefix, o, s), accuracy: 1e-3, "'\(prefix)' + '\(s.text)'")
            }
            print("word mode '\(prefix)' → \(r.suggestions.map { "\($0.text) (\($0.probability))" })")
        }
        XCTAssertEqual(try suggest(e, "Remind me to call my mother tom", o).suggestions.first?.text, "orrow")
        XCTAssertEqual(e.stats().kvBytesInUse, 0)
    }

    /// An empty field suggests first words (no leading space), after a context the model
    /// reads but the suggestions do not continue.
    func testEmptyPrefixPredictsFirstWordsWithAndWithoutContext() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let bare = try suggest(e, "", SuggestOptions(n: 3))
        let labelled = SuggestOptions(n: 3, context: "Form: message to a plumber.\nSubject:")
        let withContext = try suggest(e, "", labelled)
        let words = try suggest(e, "", SuggestOptions(n: 3, mode: .word, context: labelled.context))
        for (r, o) in [(bare, SuggestOptions(n: 3)), (withContext, labelled), (words, SuggestOptions(n: 3, mode: .word, context: labelled.context))] {
            XCTAssertFalse(r.healed)
            XCTAssertEqual(r.suggestions.count, 3, "\(r.suggestions.map(\.text))")
            for s in r.suggestions {
                XCTAssertFalse(s.text.first?.isWhitespace ?? true, "'\(s.text)' starts the field")
                XCTAssertEqual(s.logprob, try bruteForceLogprob(e, prefix: "", o, s), accuracy: 1e-3, "'\(s.text)'")
            }
        }
        XCTAssertNotEqual(bare.suggestions.map(\.text), withContext.suggestions.map(\.text), "the context is read")
        // The context is not typed text: a prefix after it is continued (and healed) as usual.
        let typed = try suggest(e, "Leak", labelled)
        XCTAssertTrue(typed.healed)
        XCTAssertEqual(typed.suggestions.count, 3)
        // The model reads the context, then the prefix after a space (or on a new line when
        // the context ends with one); the space is healed, never suggested.
        let m = try Shared.requireModel()
        let c = e.suggestContext(prefix: "Leak under the si", labelled)
        XCTAssertEqual(c.ids, m.tokenizer.encode("Form: message to a plumber.\nSubject:") + m.tokenizer.encode(" Leak under the"))
        XCTAssertEqual(c.heal, Array(" si".utf8))
        XCTAssertEqual(c.healedTokens, 1)
        let field = e.suggestContext(prefix: "", labelled)
        XCTAssertEqual(field.ids, m.tokenizer.encode("Form: message to a plumber.\nSubject:"))
        XCTAssertEqual(field.heal, [0x20])
        XCTAssertEqual(field.untyped, 1)
        let line = e.suggestContext(prefix: "", SuggestOptions(context: "Notes:\n"))
        XCTAssertEqual(line.ids, m.tokenizer.encode("Notes:\n"))
        XCTAssertEqual(line.heal, [])
        XCTAssertEqual(e.suggestContext(prefix: "", SuggestOptions()).ids, [e.documentStart])
        print("empty field → \(bare.suggestions.map(\.text)); after '\(labelled.context!)' → \(withContext.suggestions.map(\.text)), words \(words.suggestions.map(\.text))")
    }

    func testKeystrokesInAWordReplayExactlyWhatAFreshEngineComputes() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let o = SuggestOptions(n: 3, maxTokens: 4, maxWords: 4)
        // "do" and "dow" heal back to the same context ("... heating"): the second
        // keystroke's candidates continue the first's, whose greedy steps are replayed.
        let a = try suggest(e, "Please turn the heating do", o)
        XCTAssertGreaterThan(a.forwardPasses, 0)
        XCTAssertEqual(a.replayedSteps, 0)
        let b = try suggest(e, "Please turn the heating dow", o)
        XCTAssertGreaterThan(b.replayedSteps, 0)
        // ...and the replayed suggestions are exactly those of an engine that never saw "do".
        let fresh = try engine()
        defer { fresh.shutdown(grace: 0) }
        let c = try suggest(fresh, "Please turn the heating dow", o)
        XCTAssertEqual(c.replayedSteps, 0)
        XCTAssertEqual(b.suggestions, c.suggestions)
        XCTAssertFalse(b.suggestions.isEmpty)
        // A different context starts over (nothing to replay); its branches reuse the idle
        // branch caches, which share only part of the context, and still compute exactly
        // what an engine with no history does. Its KV is all released (or cached) when it replies.
        let d = try suggest(e, "Please turn the lights of", o)
        XCTAssertEqual(d.replayedSteps, 0)
        XCTAssertEqual(e.stats().kvBytesInUse, 0)
        let clean = try engine()
        defer { clean.shutdown(grace: 0) }
        XCTAssertEqual(d.suggestions, try suggest(clean, "Please turn the lights of", o).suggestions)
        print("'do' → \(a.suggestions.map(\.text)) (\(a.forwardPasses) passes); 'dow' → \(b.suggestions.map(\.text)) (\(b.forwardPasses) passes, \(b.replayedSteps) steps replayed)")
    }

    func testTypingASuggestedWordStartsTheNextWordWithoutAPrefill() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let o = SuggestOptions(n: 3, maxTokens: 4, maxWords: 4)
        let a = try suggest(e, "Please turn the heatin", o)
        XCTAssertTrue(a.suggestions.contains { $0.text.hasPrefix("g") }, "\(a.suggestions.map(\.text))")
        // " heating" was a branch: the context "... the heating" is its KV and first logits.
        let b = try suggest(e, "Please turn the heating ", o)
        XCTAssertEqual(b.reusedTokens, b.promptTokens - b.healedTokens, "no prompt token computed")
        // The rollouts that went through " heating" computed rows this search needs: they
        // are replayed, so it takes fewer passes than an engine that never saw "heatin".
        XCTAssertGreaterThan(b.replayedSteps, 0)
        let clean = try engine()
        defer { clean.shutdown(grace: 0) }
        let c = try suggest(clean, "Please turn the heating ", o)
        XCTAssertLessThan(c.reusedTokens, c.promptTokens - c.healedTokens)
        XCTAssertEqual(c.replayedSteps, 0)
        XCTAssertLessThan(b.forwardPasses, c.forwardPasses)
        XCTAssertEqual(b.suggestions, c.suggestions)
        XCTAssertFalse(b.suggestions.isEmpty)
        XCTAssertEqual(e.stats().kvBytesInUse, 0)
    }

    func testSuggestionsDoNotDependOnWhatWasTypedBefore() throws {
        // Replayed steps, reused branch caches and word starts taken from the previous
        // keystroke must give exactly what a computation from scratch gives: one engine
        // sees the prefixes as typed, the other in a shuffled order (a different history).
        let typed = try engine(), shuffled = try engine()
        defer { typed.shutdown(grace: 0); shuffled.shutdown(grace: 0) }
        let o = SuggestOptions(n: 3, maxTokens: 4, maxWords: 4)
        let sentence = "Please turn the heating down tonight"
        let prefixes = (1...sentence.count).map { "Message to the family: " + String(sentence.prefix($0)) }
        var inOrder: [String: SuggestResult] = [:]
        var replayed = 0
        for p in prefixes {
            inOrder[p] = try suggest(typed, p, o)
            replayed += inOrder[p]!.replayedSteps
        }
        XCTAssertGreaterThan(replayed, 0)
        var rng = TestRNG(seed: 3)
        for p in prefixes.shuffled(using: &rng) {
            let r = try suggest(shuffled, p, o)
            XCTAssertEqual(r.suggestions, inOrder[p]!.suggestions, "'\(p)'")
        }
        XCTAssertEqual(typed.stats().kvBytesInUse, 0)
        XCTAssertEqual(shuffled.stats().kvBytesInUse, 0)
    }

    func testTokensStartingWithBytesEqualAScanOfTheVocabulary() throws {
        let m = try Shared.requireModel()
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        for text in [" ", " heat", " toni", "li", "ght", "\u{00e9}", " zzzzqq", ""] {
            let prefix = Array(text.utf8)
            let found = Set(e.tokens(startingWith: prefix).map { e.tokensByBytes[$0] })
            let scanned = Set((0..<Int32(m.config.vocabSize)).filter {
                !m.tokenizer.isControl($0) && e.tokenBytes[Int($0)].starts(with: prefix)
            })
            XCTAssertEqual(found, scanned, "'\(text)'")
        }
        XCTAssertTrue(e.tokens(startingWith: Array(" zzzzqq".utf8)).isEmpty)
    }

    func testTokenHealingContinuesAPartialWord() throws {
        let m = try Shared.requireModel()
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let prefix = "Turn on the kitchen li"
        let r = try suggest(e, prefix, SuggestOptions(n: 3, maxTokens: 6, maxWords: 2))
        XCTAssertTrue(r.healed)
        XCTAssertFalse(r.suggestions.isEmpty)
        let ids = m.tokenizer.encode(prefix)
        let partial = m.tokenizer.decode(Array(ids.suffix(r.healedTokens)))  // the bytes healing backed up over
        for s in r.suggestions {
            // The first token starts with the removed bytes; the suggestion continues the word.
            XCTAssertTrue(m.tokenizer.decode([s.tokens[0]]).hasPrefix(partial), "\(partial) → \(m.tokenizer.decode([s.tokens[0]]))")
            XCTAssertEqual(String(s.text.first ?? " ").trimmingWhitespace().isEmpty, false, "'\(s.text)' continues the word")
        }
        print("healed suggestions for '\(prefix)': \(r.suggestions.map { "\(prefix)\($0.text)" })")
        // A partial word spanning two tokens is healed whole: " toni" → " tonight".
        let t = try suggest(e, "Please turn the heating down toni", SuggestOptions(n: 3, maxTokens: 4, maxWords: 2))
        XCTAssertGreaterThanOrEqual(t.healedTokens, 1)
        XCTAssertTrue(t.suggestions.contains { $0.text.hasPrefix("ght") }, "\(t.suggestions.map(\.text))")
    }

    func testChooseEqualsPlainForwardLogprobs() throws {
        let m = try Shared.requireModel()
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let prompt = m.tokenizer.encode("Review: I loved this phone, the battery lasts forever.\nSentiment:")
        let texts = [" positive", " negative", " neutral and balanced"]
        let options = texts.map { m.tokenizer.encode($0) }
        let box = JobBox()
        _ = try e.submitChoose(promptIDs: prompt, options: options, texts: texts, normalize: false, completion: box.completion)
        guard case .choose(let r)? = box.wait() else { return XCTFail("no choose result") }
        XCTAssertEqual(r.options.count, 3)
        XCTAssertEqual(r.options[r.best].text, " positive")
        let runner = Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: 2), maxBatch: 64, maxContext: 128, maxLogits: 1)
        for (i, opt) in options.enumerated() {
            let session = Session(runner: runner, capacity: 128)
            var logits = try session.feed(prompt)
            var lp = 0.0
            for t in opt {
                lp -= Perplexity.negativeLogLikelihood(logits, target: Int(t))
                logits = try session.feed([t])
            }
            XCTAssertEqual(r.options[i].logprob, lp, accuracy: 1e-6, "option \(i): batched equals plain")
        }
    }
}

/// The vectorised argmax and log-sum-exp that score suggest and choose rows.
final class LogitStatsTests: XCTestCase {
    func reference(_ l: [Float]) -> Double {
        let m = l.max()!
        return Double(m) + log(l.reduce(0.0) { $0 + exp(Double($1 - m)) })
    }

    func testMatchesTheDoubleReference() {
        var rng = TestRNG(seed: 7)
        // Vocabulary-sized rows with logit-like spreads, plus a ragged length for the tail.
        for (count, spread) in [(49_152, 8.0), (49_152, 30.0), (1_003, 3.0), (5, 100.0)] as [(Int, Float)] {
            var l = (0..<count).map { _ in (rng.nextUnit() - 0.5) * spread }
            l[count / 3] = spread  // a clear maximum
            let (arg, lse) = l.withUnsafeBufferPointer { LogitStats.argmaxLogSumExp($0) }
            XCTAssertEqual(Int(arg), count / 3)
            XCTAssertEqual(lse, reference(l), accuracy: 2e-7 * max(1, abs(reference(l))))
        }
    }

    /// The vector argmax is the scalar greedy rule: the first index of the largest logit, NaN
    /// never winning, 0 when nothing is above -inf; maxima in the vector body and in the tail.
    func testArgmaxIsTheScalarGreedyRule() {
        func scalar(_ l: [Float]) -> Int32 {
            var best = 0, value = -Float.infinity
            for i in l.indices where l[i] > value { best = i; value = l[i] }
            return Int32(best)
        }
        var rng = TestRNG(seed: 5)
        var rows: [[Float]] = [[], [.nan], [-.infinity, -.infinity], [.nan, -.infinity, .nan], [1, 1], [0, .nan, 2, 2]]
        for count in [1, 7, 8, 9, 17, 1_003, 49_152] {
            for at in [0, count / 2, count - 1] {
                var l = (0..<count).map { _ in (rng.nextUnit() - 0.5) * 20 }
                l[at] = 50
                rows.append(l)
                l[count - 1 - at] = 50  // a tie: the lower index wins
                if count > 3 { l[1] = .nan }
                rows.append(l)
            }
        }
        for l in rows {
            XCTAssertEqual(l.withUnsafeBufferPointer { LogitStats.argmax($0) }, scalar(l), "\(l.count) logits")
            XCTAssertEqual(l.withUnsafeBufferPointer { LogitStats.argmaxLogSumExp($0).argmax }, scalar(l))
        }
    }

    /// The fused row summary of a suggest step: the same log-sum-exp bit for bit, the k
    /// largest logits as a full sort finds them (ties to the lower id), and the masked mass.
    func testExpansionEqualsSeparateReferences() {
        var rng = TestRNG(seed: 11)
        for (count, spread, k) in [(49_152, 8.0, 10), (49_152, 30.0, 10), (1_003, 3.0, 4), (5, 100.0, 10)] as [(Int, Float, Int)] {
            var l = (0..<count).map { _ in (rng.nextUnit() - 0.5) * spread }
            l[count / 2] = l[count / 4]  // a tie, kept by the lower index first
            let mask: [Float] = (0..<count).map { _ in rng.nextUnit() < 0.3 ? 1 : 0 }
            var ids = [Int32](repeating: 0, count: k), values = [Float](repeating: 0, count: k)
            let (lse, masked) = l.withUnsafeBufferPointer { row in
                mask.withUnsafeBufferPointer { m in
                    ids.withUnsafeMutableBufferPointer { i in
                        values.withUnsafeMutableBufferPointer { v in
                            LogitStats.expansion(row, mask: m.baseAddress!, topIDs: i, topValues: v)
                        }
                    }
                }
            }
            XCTAssertEqual(lse, l.withUnsafeBufferPointer { LogitStats.logSumExp($0) }, "bit for bit")
            let order = l.indices.sorted { l[$0] > l[$1] || (l[$0] == l[$1] && $0 < $1) }
            let want = min(k, count)
            XCTAssertEqual(ids.prefix(want).map(Int.init), Array(order.prefix(want)))
            XCTAssertEqual(values.prefix(want).map { $0 }, order.prefix(want).map { l[$0] })
            XCTAssertTrue(ids.dropFirst(want).allSatisfy { $0 == -1 })
            let m = Double(l.max()!)
            let ref = m + log(l.indices.reduce(0.0) { $0 + Double(mask[$1]) * exp(Double(l[$1]) - m) })
            XCTAssertEqual(masked, ref, accuracy: 1e-6 * max(1, abs(ref)))
        }
        // An all-zero mask has no mass.
        let l: [Float] = [1, 2, 3]
        let zero: [Float] = [0, 0, 0]
        var ids = [Int32](repeating: 0, count: 2), values = [Float](repeating: 0, count: 2)
        let r = l.withUnsafeBufferPointer { row in
            zero.withUnsafeBufferPointer { m in
                ids.withUnsafeMutableBufferPointer { i in
                    values.withUnsafeMutableBufferPointer { LogitStats.expansion(row, mask: m.baseAddress!, topIDs: i, topValues: $0) }
                }
            }
        }
        XCTAssertEqual(r.maskedLogMass, -.infinity)
        XCTAssertEqual(ids, [2, 1])
    }

    func testExtremesAndTies() {
        // Values far below the maximum (underflow) and a tie, which goes to the lower index.
        var l = [Float](repeating: -200, count: 100)
        l[40] = 5; l[70] = 5; l[3] = -90
        let (arg, lse) = l.withUnsafeBufferPointer { LogitStats.argmaxLogSumExp($0) }
        XCTAssertEqual(arg, 40)
        XCTAssertEqual(lse, 5 + log(2.0), accuracy: 1e-6)
        // The polynomial exp is exact-ish across the whole reduced range.
        for x in stride(from: Float(-87), through: 0, by: 0.37) {
            let e = FastMath.exp(SIMD8(repeating: x))[0]
            XCTAssertEqual(Double(e), exp(Double(x)), accuracy: 2e-7 * exp(Double(x)), "x = \(x)")
        }
    }
}
