import SLMTestSupport
import XCTest
@testable import SLMConstraint

/// Masks over the real 49,152-token vocabulary agree with brute force (every token's bytes
/// fed through the automaton) on random reachable states.
final class TokenMaskTests: XCTestCase {
    static let vocabulary: Result<ConstraintVocabulary, Error> = Result { ConstraintVocabulary(tokenizer: try RealModel.tokenizer()) }

    func vocab() throws -> ConstraintVocabulary {
        do { return try Self.vocabulary.get() } catch {
            XCTFail("\(error)")
            throw error
        }
    }

    func bruteForce(_ a: SchemaAutomaton, _ s: SchemaAutomaton.State, _ v: ConstraintVocabulary) -> [Int32] {
        (0..<Int32(v.vocabSize)).filter { id in
            if v.isEndOfGeneration(id) { return a.isAccepting(s) }
            return v.isEligible(id) && a.step(s, v.bytes(of: id)) != nil
        }
    }

    /// States reached by walking a random prefix of a random valid instance.
    func randomStates(_ schema: OrderedJSON, _ a: SchemaAutomaton, count: Int, gen: inout SchemaGen) -> [SchemaAutomaton.State] {
        var out: [SchemaAutomaton.State] = []
        for _ in 0..<count {
            var p = false
            let text = gen.instance(schema, poisoned: &p)
            let cut = gen.int(0...text.count)
            out.append(a.step(a.initialState, text.prefix(cut))!)
        }
        return out
    }

    func checkStates(_ a: SchemaAutomaton, _ states: [SchemaAutomaton.State], _ v: ConstraintVocabulary, label: String) -> Int {
        var compared = 0
        for s in states {
            let d = ConstrainedDecoder(automaton: a, vocabulary: v, state: s)
            let expected = bruteForce(a, s, v)
            let got = d.allowedTokens()
            if got != expected {
                let extra = Set(got).subtracting(expected).prefix(5).map { "\($0):\(String(decoding: v.bytes(of: $0), as: UTF8.self).debugDescription)" }
                let missing = Set(expected).subtracting(got).prefix(5).map { "\($0):\(String(decoding: v.bytes(of: $0), as: UTF8.self).debugDescription)" }
                XCTFail("\(label): mask differs after \(d.generatedText.debugDescription) state \(s): extra \(extra) missing \(missing)")
            }
            // The verifier agrees with the mask token by token.
            let allowedSet = Set(got)
            for id in stride(from: Int32(0), to: Int32(v.vocabSize), by: 7) where d.allows(id) != allowedSet.contains(id) {
                XCTFail("\(label): allows(\(id)) = \(d.allows(id)) disagrees with the mask")
                break
            }
            compared += 1
        }
        return compared
    }

    func testMasksMatchBruteForceOnIntentSchema() throws {
        let v = try vocab()
        let schema = try OrderedJSON(parsing: IntentSchema.text)
        let a = try JSONSchemaCompiler.compile(schema)
        var gen = SchemaGen(seed: 11)
        // Every prefix of a few valid outputs, plus random ones.
        var states: [SchemaAutomaton.State] = []
        for text in [#"{"action":"turn_off","device":"light","room":"bedroom","value":null}"#,
                     #"{"action":"set","device":"thermostat","room":"office","value":100}"#] {
            for cut in 0...text.utf8.count { states.append(a.step(a.initialState, Array(text.utf8).prefix(cut))!) }
        }
        states += randomStates(schema, a, count: 20, gen: &gen)
        let n = checkStates(a, states, v, label: "intent")
        print("intent schema: \(n) states compared with brute force")
    }

    func testMasksMatchBruteForceOnFreeStringsAndNumbers() throws {
        let v = try vocab()
        var gen = SchemaGen(seed: 12)
        var n = 0
        for text in [#"{"type":"object","properties":{"text":{"type":"string"},"n":{"type":"number"}},"required":["text"]}"#,
                     #"{"type":"array","items":{"type":"string","maxLength":3},"maxItems":4}"#,
                     #"{"type":"integer","minimum":-120,"maximum":4500}"#,
                     #"{"type":["string","integer","null","boolean"]}"#] {
            let schema = try OrderedJSON(parsing: text)
            let a = try JSONSchemaCompiler.compile(schema)
            n += checkStates(a, randomStates(schema, a, count: 12, gen: &gen), v, label: text)
        }
        print("string/number schemas: \(n) states compared with brute force")
    }

    func testMasksMatchBruteForceOnRandomSchemas() throws {
        let v = try vocab()
        var gen = SchemaGen(seed: 13)
        var n = 0
        for _ in 0..<25 {
            let schema = gen.schema()
            let a = try JSONSchemaCompiler.compile(schema)
            n += checkStates(a, randomStates(schema, a, count: 3, gen: &gen), v, label: schema.compactText)
        }
        print("random schemas: \(n) states compared with brute force")
    }

    func testOnlyEndOfGenerationWhenComplete() throws {
        let v = try vocab()
        let a = try JSONSchemaCompiler.compile(#"{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}"#)
        let d = ConstrainedDecoder(automaton: a, vocabulary: v, state: a.step(a.initialState, Array(#"{"ok":true}"#.utf8))!)
        XCTAssertTrue(d.isComplete)
        XCTAssertEqual(d.allowedTokens(), v.eogIDs)
        XCTAssertFalse(v.eogIDs.isEmpty)
        // Control tokens never appear inside JSON.
        let start = ConstrainedDecoder(automaton: a, vocabulary: v)
        for id in 0..<Int32(v.vocabSize) where v.tokenizer.isControl(id) { XCTAssertFalse(start.allows(id)) }
    }

    func testForcedTokensSpellTheOnlyContinuation() throws {
        let v = try vocab()
        let schema = try OrderedJSON(parsing: IntentSchema.text)
        let a = try JSONSchemaCompiler.compile(schema)
        let d = ConstrainedDecoder(automaton: a, vocabulary: v)
        let forced = d.forcedTokens()
        XCTAssertEqual(String(decoding: forced.flatMap { v.bytes(of: $0) }, as: UTF8.self), #"{"action":""#)
        XCTAssertEqual(forced, v.tokenizer.encode(#"{"action":""#, parseSpecial: false))
        // On random states: forced tokens are allowed one after another, spell a prefix of the
        // unique continuation, and leave a state with a choice (or a finished document).
        var gen = SchemaGen(seed: 14)
        var total = 0
        for s in randomStates(schema, a, count: 60, gen: &gen) {
            let d = ConstrainedDecoder(automaton: a, vocabulary: v, state: s)
            let ids = d.forcedTokens()
            var unique: [UInt8] = []
            var t = s
            while !a.isAccepting(t) {
                let next = a.allowedBytes(t)
                guard next.count == 1 else { break }
                unique.append(next[0])
                t = a.step(t, next[0])!
            }
            var spelled: [UInt8] = []
            for id in ids {
                XCTAssertTrue(d.allows(id), "forced \(id) not allowed")
                d.advance(id)
                spelled += v.bytes(of: id)
            }
            XCTAssertTrue(unique.starts(with: spelled), "\(String(decoding: spelled, as: UTF8.self)) vs \(String(decoding: unique, as: UTF8.self))")
            total += ids.count
        }
        print("forced tokens on 60 random states: \(total)")
    }

    /// One decoder walking long outputs token by token, so cached masks (with clamped
    /// counters in the key) are served: every mask still equals brute force.
    func testCachedMasksStayExactAlongLongOutputs() throws {
        let v = try vocab()
        let long = String(repeating: "abc def ", count: 12)  // 96 characters
        let cases: [(String, String)] = [
            (#"{"type":"object","properties":{"s":{"type":"string","maxLength":100},"t":{"type":"string"}},"required":["s","t"]}"#,
             #"{"s":"\#(long)é!","t":"\#(long)\#(long)"}"#),
            (#"{"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"maxItems":90}"#,
             "[" + (0..<90).map { String($0 % 10) }.joined(separator: ",") + "]"),
        ]
        var steps = 0, hits = 0
        for (schemaText, text) in cases {
            let a = try JSONSchemaCompiler.compile(schemaText)
            XCTAssertTrue(a.accepts(Array(text.utf8)), text)
            let d = ConstrainedDecoder(automaton: a, vocabulary: v)
            for id in v.tokenizer.encode(text, parseSpecial: false) {
                let m = d.currentMask()
                let got = (0..<Int32(v.vocabSize)).filter { m[Int($0) >> 6] & (1 << UInt64($0 & 63)) != 0 }
                XCTAssertEqual(got, bruteForce(a, d.state, v), "after \(d.generatedText.debugDescription)")
                XCTAssertTrue(d.allows(id))
                d.advance(id)
                steps += 1
            }
            XCTAssertTrue(d.isComplete)
            hits += d.stats.maskCacheHits
        }
        print("long outputs: \(steps) masks compared with brute force, \(hits) served from the cache")
        XCTAssertGreaterThan(hits, 0)
    }

    func testSharedMaskCacheServesLaterRequests() throws {
        let v = try vocab()
        let a = try JSONSchemaCompiler.compile(IntentSchema.text)
        let shared = MaskCache(automaton: a, vocabulary: v)
        let ids = v.tokenizer.encode(#"{"action":"lock","device":"door","room":"garage","value":null}"#, parseSpecial: false)
        var masks: [[[UInt64]]] = []
        for _ in 0..<2 {
            let d = ConstrainedDecoder(automaton: a, vocabulary: v, sharedCache: shared)
            var seen: [[UInt64]] = []
            for id in ids {
                seen.append(d.currentMask())
                XCTAssertTrue(d.allows(id))
                d.advance(id)
            }
            XCTAssertTrue(d.isComplete)
            masks.append(seen)
            if masks.count == 1 {
                XCTAssertGreaterThan(d.stats.masksComputed, 0)
            } else {
                XCTAssertEqual(d.stats.masksComputed, 0, "the second request computes no mask")
                XCTAssertEqual(d.stats.sharedCacheHits + d.stats.maskCacheHits, ids.count)
            }
        }
        XCTAssertEqual(masks[0], masks[1])
        XCTAssertGreaterThan(shared.count, 0)
    }

    func testVocabularyTrieHoldsEveryEligibleToken() throws {
        let v = try vocab()
        let t0 = ContinuousClock.now
        let fresh = ConstraintVocabulary(tokenizer: v.tokenizer)
        let build = ContinuousClock.now - t0
        print("vocabulary: \(fresh.eligibleCount) eligible of \(fresh.vocabSize) tokens, \(fresh.trieNodeCount) trie nodes, "
              + "max \(fresh.maxTokenBytes) bytes/token, tables \(fresh.tableBytes / 1024) KiB, built in \(build)")
        XCTAssertEqual(fresh.nodeTokens.count, fresh.eligibleCount)
        // Walking each node's path spells its tokens.
        var path: [UInt8] = []
        for i in 1..<fresh.trieNodeCount {
            path = Array(path.prefix(Int(fresh.nodeDepth[i]) - 1)) + [fresh.nodeByte[i]]
            for k in Int(fresh.nodeTokenStart[i])..<Int(fresh.nodeTokenStart[i + 1]) {
                XCTAssertEqual(Array(fresh.bytes(of: fresh.nodeTokens[k])), path)
            }
        }
    }
}
