import SLMTestSupport
import XCTest
@testable import SLMModel
@testable import SLMTokenizer
@testable import SLMConstraint

/// End to end with the real model: constrained generation of a smart-home intent always
/// yields a valid document and always stops within max_tokens; plus the cost measurements.
final class ConstrainedGenerationTests: XCTestCase {
    static let maxTokens = 48
    static let utterances = [
        "switch off the lights in the bedroom",
        "turn on the kitchen light",
        "set the thermostat in the living room to 21",
        "open the garage door",
        "close the blinds in the office",
        "lock the front door in the hallway",
        "unlock the garden door",
        "is the bathroom fan on?",
        "dim the bedroom lights to 30 percent",
        "turn the tv in the living room off",
        "open the kitchen window please",
        "what's the status of the garage door",
        "set the speaker in the office to volume 45",
        "close the bathroom window",
        "turn on the fan in the bedroom",
        "lights off in the hallway",
        "put the living room blinds at 70",
        "could you lock the garage",
        "switch the garden lights on",
        "set the bedroom thermostat to 100",
    ]

    /// What a person would answer (action, device, room), for a printed field accuracy: the
    /// constraint guarantees validity, not correctness, which is the model's job.
    static let expected: [(String, String, String)] = [
        ("turn_off", "light", "bedroom"), ("turn_on", "light", "kitchen"), ("set", "thermostat", "living_room"),
        ("open", "door", "garage"), ("close", "blinds", "office"), ("lock", "door", "hallway"), ("unlock", "door", "garden"),
        ("status", "fan", "bathroom"), ("set", "light", "bedroom"), ("turn_off", "tv", "living_room"),
        ("open", "window", "kitchen"), ("status", "door", "garage"), ("set", "speaker", "office"),
        ("close", "window", "bathroom"), ("turn_on", "fan", "bedroom"), ("turn_off", "light", "hallway"),
        ("set", "blinds", "living_room"), ("lock", "door", "garage"), ("turn_on", "light", "garden"),
        ("set", "thermostat", "bedroom"),
    ]

    static let system = """
        You turn smart-home commands into JSON: {"action":...,"device":...,"room":...,"value":...}.
        action: one of \(IntentSchema.actions.joined(separator: ", ")).
        device: one of \(IntentSchema.devices.joined(separator: ", ")).
        room: one of \(IntentSchema.rooms.joined(separator: ", ")).
        value: a number from 0 to 100 for "set", otherwise null. Reply with the JSON only.
        Examples:
        "turn off the fan in the office" -> {"action":"turn_off","device":"fan","room":"office","value":null}
        "set the kitchen blinds to 40" -> {"action":"set","device":"blinds","room":"kitchen","value":40}
        """

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
    static let clock = ContinuousClock()
    static let epoch = clock.now
    static func now() -> Double { seconds(clock.now - epoch) }

    struct Setup {
        let model: Model
        let runner: Runner
        let vocabulary: ConstraintVocabulary
        let schema: OrderedJSON
        let automaton: SchemaAutomaton
    }

    func setup() throws -> Setup {
        let (model, runner) = try ReferenceData.runner()
        let schema = try OrderedJSON(parsing: IntentSchema.text)
        return Setup(model: model, runner: runner, vocabulary: ConstraintVocabulary(tokenizer: model.tokenizer),
                     schema: schema, automaton: try JSONSchemaCompiler.compile(schema))
    }

    func prompt(_ s: Setup, _ utterance: String) throws -> [Int32] {
        let text = try s.model.renderChat([ChatMessage(role: "system", content: Self.system),
                                           ChatMessage(role: "user", content: utterance)])
        var ids = s.model.tokenizer.encode(text)
        if s.model.tokenizer.addBOS, let bos = s.model.tokenizer.bosID { ids.insert(bos, at: 0) }
        return ids
    }

    /// Runs one constrained generation and checks the result is a valid, complete intent.
    @discardableResult
    func generate(_ s: Setup, _ utterance: String, automaton: SchemaAutomaton? = nil, schema: OrderedJSON? = nil,
                  sampling: SamplingParams, maxTokens: Int = maxTokens, departures: DepartureFilter? = nil,
                  noNumbers: Bool = false) throws -> (GenerationOutput, ConstraintStats) {
        let ids = try prompt(s, utterance)
        let session = Session(runner: s.runner, capacity: ids.count + maxTokens + 4)
        let decoder = ConstrainedDecoder(automaton: automaton ?? s.automaton, vocabulary: s.vocabulary)
        let (out, stats) = try ConstrainedGenerator.run(model: s.model, session: session, promptIDs: ids, decoder: decoder,
                                                         options: GenerationOptions(maxTokens: maxTokens, sampling: sampling),
                                                         departures: departures, noNumbers: noNumbers, now: Self.now)
        XCTAssertLessThanOrEqual(out.generatedIDs.count, maxTokens)
        if let bound = (automaton ?? s.automaton).maxOutputBytes { XCTAssertLessThanOrEqual(out.generatedIDs.count, bound) }
        XCTAssertEqual(out.finishReason, .stop, "\(utterance): did not finish: \(out.text)")
        XCTAssertTrue(decoder.isComplete)
        XCTAssertEqual(s.model.tokenizer.decode(out.generatedIDs), out.text, "the tokens spell the text")
        let json = try OrderedJSON(parsing: out.text)
        XCTAssertTrue(ReferenceMatcher.accepts(schema ?? s.schema, Array(out.text.utf8)), "\(utterance): \(out.text) is not valid")
        if automaton == nil {
            guard case .string(let action)? = json["action"], case .string(let device)? = json["device"],
                  case .string(let room)? = json["room"], let value = json["value"] else {
                XCTFail("\(out.text) lacks a member")
                return (out, stats)
            }
            XCTAssertTrue(IntentSchema.actions.contains(action) && IntentSchema.devices.contains(device) && IntentSchema.rooms.contains(room))
            if case .number(let n) = value { XCTAssertTrue((0...100).contains(Int(n) ?? -1), n) } else { XCTAssertEqual(value, .null) }
        }
        return (out, stats)
    }

    func testGreedyIntentsAreValidAndTerminate() throws {
        let s = try setup()
        var lines: [String] = []
        var sampled = 0, forced = 0, passes = 0, rejections = 0
        var correct = 0
        for (k, u) in Self.utterances.enumerated() {
            let (out, stats) = try generate(s, u, sampling: .greedy)
            if let json = try? OrderedJSON(parsing: out.text) {
                let e = Self.expected[k]
                for (key, want) in [("action", e.0), ("device", e.1), ("room", e.2)] where json[key] == .string(want) { correct += 1 }
            }
            lines.append("  \(u) -> \(out.text)")
            sampled += out.generatedIDs.count - stats.forcedTokens
            forced += stats.forcedTokens
            passes += stats.forwardPasses
            rejections += stats.rejections
        }
        print("greedy intents:\n" + lines.joined(separator: "\n"))
        print("greedy field accuracy (action/device/room, not asserted): \(correct)/\(Self.utterances.count * 3)")
        print("greedy totals: \(sampled) sampled + \(forced) forced tokens, \(passes) forward passes after the prompt, \(rejections) rejected samples")
    }

    /// Departures: where the schema refused the model's own choice, a probe finds what it
    /// wanted, and the constrained output is exactly the same as without looking (the probe
    /// rewinds the session). 180 under a maximum of 100 is closed at 18 by the schema.
    func testDeparturesFindWhatTheModelWantedAndChangeNothing() throws {
        let s = try setup()
        for (u, field, wanted) in [("set the bedroom thermostat to 180", "value", "180"),
                                   ("turn on the dishwasher in the kitchen", "device", #""dishwasher""#)] {
            let (plain, plainStats) = try generate(s, u, sampling: .greedy)
            XCTAssertEqual(plainStats.departures, [], "nothing is probed without a filter")
            let (out, stats) = try generate(s, u, sampling: .greedy, departures: DepartureFilter(schema: s.schema, utterance: u))
            XCTAssertEqual(out.generatedIDs, plain.generatedIDs, "\(u): the probe changed the output")
            XCTAssertEqual(stats.sampled, plainStats.sampled)
            let verdict = ParseVerdict.judge(text: Array(out.text.utf8), sampled: stats.sampled, departures: stats.departures,
                                             schema: s.schema, utterance: u)
            print("\(u) -> \(out.text), departures \(stats.departures.map { String(decoding: $0.wanted, as: UTF8.self) }), violations \(verdict.violations)")
            XCTAssertTrue(verdict.violations.contains { $0.field == field && $0.wanted == wanted }, "\(u): \(verdict.violations)")
        }
    }

    /// With no number in the utterance a nullable number is null: written without asking the
    /// model (no sampled token for it), where it would otherwise copy one from its examples.
    func testNoNumbersKeepsANullableNumberNull() throws {
        let s = try setup()
        let u = "turn on the kitchen light"
        let (out, stats) = try generate(s, u, sampling: .greedy, noNumbers: true)
        XCTAssertTrue(out.text.hasSuffix(#""value":null}"#), out.text)
        let valueStart = out.text.utf8.count - #"null}"#.utf8.count
        XCTAssertFalse(stats.sampled.contains { $0.offset >= valueStart }, "null was not a model choice")
        // A schema whose number is not nullable is left alone.
        let required = try OrderedJSON(parsing: #"{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"]}"#)
        let (n, _) = try generate(s, u, automaton: try JSONSchemaCompiler.compile(required), schema: required, sampling: .greedy,
                                  noNumbers: true)
        XCTAssertTrue(n.text.hasPrefix(#"{"n":"#) && n.text.count == 7, n.text)
    }

    /// Confidence figures: each sampled token's constrained log-probability equals the
    /// softmax over exactly the allowed tokens (brute force), and fields get the product.
    func testFieldConfidenceIsTheConstrainedProbabilityOfTheChoices() throws {
        let s = try setup()
        let (out, stats) = try generate(s, "please switch off the lights in the kitchen", sampling: .greedy)
        XCTAssertEqual(stats.sampled.count, out.generatedIDs.count - stats.forcedTokens)
        XCTAssertTrue(stats.sampled.allSatisfy { $0.logprob <= 0 && $0.logprob.isFinite })
        let fields = FieldConfidence.compute(text: Array(out.text.utf8), sampled: stats.sampled)
        XCTAssertEqual(fields.map(\.key), ["action", "device", "room", "value"])
        XCTAssertTrue(fields.allSatisfy { $0.confidence > 0 && $0.confidence <= 1 }, "\(fields)")
        let total = stats.sampled.reduce(0.0) { $0 + Double($1.logprob) }
        XCTAssertEqual(fields.reduce(0.0) { $0 + log($1.confidence) }, total, accuracy: 1e-9, "every sampled token counts once")

        // Brute force on the first free choice (the action value): replay the prompt and
        // the forced `{"action":"`, then renormalise the softmax over the allowed tokens.
        let ids = try prompt(s, "please switch off the lights in the kitchen")
        let session = Session(runner: s.runner, capacity: ids.count + 32)
        let decoder = ConstrainedDecoder(automaton: s.automaton, vocabulary: s.vocabulary)
        let forced = decoder.forcedTokens()
        for t in forced { decoder.advance(t) }
        let logits = try session.feed(ids + forced)
        let copy = Array(logits)
        let allowed = decoder.allowedTokens()
        XCTAssertGreaterThan(allowed.count, 1)
        let m = allowed.map { Double(copy[Int($0)]) }.max()!
        let lse = m + log(allowed.reduce(0.0) { $0 + exp(Double(copy[Int($1)]) - m) })
        for t in allowed.prefix(20) {
            XCTAssertEqual(Double(decoder.maskedLogProb(of: t, logits)), Double(copy[Int(t)]) - lse, accuracy: 1e-4)
        }
        decoder.applyMask(logits)  // on masked logits the figure is the same
        XCTAssertEqual(Double(decoder.maskedLogProb(of: allowed[0], logits)), Double(copy[Int(allowed[0])]) - lse, accuracy: 1e-4)
    }

    func testFieldConfidenceSpans() {
        let text = Array(#"{"a":"xy","b":12,"c":{"d":[1,2]}}"#.utf8)
        // Offsets: "xy" is 5..<9 and `,` 9; 12 is 14..<16; the object 21..<32 and the root `}` 32.
        let sampled = [SampledToken(offset: 6, logprob: -1), SampledToken(offset: 9, logprob: -0.5),
                       SampledToken(offset: 14, logprob: -2), SampledToken(offset: 25, logprob: -0.25),
                       SampledToken(offset: 32, logprob: -0.125)]
        let f = FieldConfidence.compute(text: text, sampled: sampled)
        XCTAssertEqual(f.map(\.key), ["a", "b", "c"])
        XCTAssertEqual(f[0].confidence, exp(-1.5), accuracy: 1e-12)
        XCTAssertEqual(f[1].confidence, exp(-2), accuracy: 1e-12)
        XCTAssertEqual(f[2].confidence, exp(-0.375), accuracy: 1e-12)
        XCTAssertEqual(FieldConfidence.compute(text: Array("[1]".utf8), sampled: []), [])
        XCTAssertEqual(FieldConfidence.compute(text: Array(#"{"a":"#.utf8), sampled: []), [], "unfinished output has no fields")
        XCTAssertEqual(FieldConfidence.compute(text: Array(#"{"a":"q\"}","b":1}"#.utf8), sampled: []).map(\.key), ["a", "b"])
    }

    func testSampledIntentsAreValidAndTerminate() throws {
        let s = try setup()
        var lines: [String] = []
        for (i, u) in Self.utterances.enumerated() {
            let seed = UInt64(1000 + i * 7919)
            let (out, stats) = try generate(s, u, sampling: SamplingParams(temperature: 1.0, topK: 0, topP: 1, minP: 0, seed: seed))
            lines.append("  [seed \(seed)] \(u) -> \(out.text) (rejections \(stats.rejections))")
        }
        print("temperature 1.0 intents:\n" + lines.joined(separator: "\n"))
    }

    /// A free string bounded by maxLength still ends the document within max_tokens; an
    /// unbounded one is cut at max_tokens with a valid prefix.
    func testStringsTerminateWithinMaxTokens() throws {
        let s = try setup()
        let bounded = try OrderedJSON(parsing: #"{"type":"object","properties":{"summary":{"type":"string","maxLength":30}},"required":["summary"]}"#)
        let a = try JSONSchemaCompiler.compile(bounded)
        for (i, u) in Self.utterances.prefix(5).enumerated() {
            let (out, _) = try generate(s, u, automaton: a, schema: bounded,
                                        sampling: SamplingParams(temperature: 1.5, topK: 0, topP: 1, minP: 0, seed: UInt64(i)), maxTokens: 40)
            print("bounded string: \(out.text)")
        }
        // With a budget too small to finish: cut at max_tokens, output a valid prefix.
        let ids = try prompt(s, Self.utterances[0])
        let session = Session(runner: s.runner, capacity: ids.count + 16)
        let d = ConstrainedDecoder(automaton: s.automaton, vocabulary: s.vocabulary)
        let (out, _) = try ConstrainedGenerator.run(model: s.model, session: session, promptIDs: ids, decoder: d,
                                                    options: GenerationOptions(maxTokens: 6, sampling: .greedy), now: Self.now)
        XCTAssertEqual(out.finishReason, .length)
        XCTAssertLessThanOrEqual(out.generatedIDs.count, 6)
        XCTAssertNotNil(s.automaton.step(s.automaton.initialState, Array(out.text.utf8)))
    }

    /// A cancel or deadline mid-decode ends generation at the next pass with that reason,
    /// leaving a valid but unfinished prefix (the engine then answers with an error, §10).
    func testInterruptEndsGenerationAtTheNextPass() throws {
        let s = try setup()
        let ids = try prompt(s, Self.utterances[0])
        for reason in [FinishReason.cancelled, .deadline] {
            let session = Session(runner: s.runner, capacity: ids.count + Self.maxTokens + 4)
            let d = ConstrainedDecoder(automaton: s.automaton, vocabulary: s.vocabulary)
            var asked = 0
            let (out, stats) = try ConstrainedGenerator.run(
                model: s.model, session: session, promptIDs: ids, decoder: d,
                options: GenerationOptions(maxTokens: Self.maxTokens, sampling: .greedy),
                interrupt: { asked += 1; return asked > 3 ? reason : nil }, now: Self.now)
            XCTAssertEqual(out.finishReason, reason)
            XCTAssertEqual(asked, 4, "asked once per pass, and no pass after the interrupt")
            XCTAssertEqual(stats.forwardPasses, 2, "the prompt pass, then two sampled tokens' passes")
            XCTAssertFalse(d.isComplete)
            XCTAssertNotNil(s.automaton.step(s.automaton.initialState, Array(out.text.utf8)))
        }
    }

    /// Prints (does not assert) what the constraint costs next to the forward pass.
    func testMeasureMaskCost() throws {
        let s = try setup()
        var forward: [Double] = [], fullMask: [Double] = [], applyCached: [Double] = [], verify: [Double] = [], forcedT: [Double] = []
        var confidenceT: [Double] = []
        func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }
        func p99(_ a: [Double]) -> Double { a.sorted()[min(a.count - 1, Int(Double(a.count) * 0.99))] }
        func ms(_ x: Double) -> String { String(format: "%.3f ms", x * 1000) }
        var steps = 0, rejected = 0
        var worst = (0.0, "")
        var inStringFast: [Double] = [], inStringSlow: [Double] = []

        func run(_ automaton: SchemaAutomaton, _ utterance: String, sampling: SamplingParams) throws {
            let ids = try prompt(s, utterance)
            let session = Session(runner: s.runner, capacity: ids.count + Self.maxTokens + 4)
            let d = ConstrainedDecoder(automaton: automaton, vocabulary: s.vocabulary)
            let sampler = Sampler(params: sampling, vocabSize: s.vocabulary.vocabSize)
            var logits = try session.feed(ids)
            let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: logits.count)
            defer { scratch.deallocate() }
            var produced = 0
            while !d.isComplete && produced < Self.maxTokens {
                steps += 1
                // Full mask, uncached: the scan of the vocabulary trie. Best of 3, so a
                // preemption on this shared machine does not pose as mask cost.
                var best = Double.infinity
                for _ in 0..<3 {
                    let t = Self.now()
                    d.computeMask()
                    best = min(best, Self.now() - t)
                }
                fullMask.append(best)
                if d.state.depth > 0 && d.state.frames[d.state.depth - 1].kind == .string {
                    d.useStringFastPath = false
                    var slow = Double.infinity
                    for _ in 0..<3 {
                        let t = Self.now()
                        d.computeMask()
                        slow = min(slow, Self.now() - t)
                    }
                    d.useStringFastPath = true
                    inStringFast.append(best)
                    inStringSlow.append(slow)
                }
                if best > worst.0 { worst = (best, d.generatedText) }
                var t = Self.now()
                // Mask applied from the cache (what a repeat of this state costs).
                _ = d.currentMask()
                _ = scratch.initialize(from: logits)
                t = Self.now()
                d.applyMask(scratch)
                applyCached.append(Self.now() - t)
                // Sample-then-verify, as the generator does it.
                var id = sampler.sample(logits)
                t = Self.now()
                if !d.allows(id) {
                    rejected += 1
                    d.applyMask(logits)
                    id = sampler.sample(logits)
                }
                verify.append(Self.now() - t)
                // The confidence figure parse adds per sampled token (mask cached by now).
                t = Self.now()
                _ = d.maskedLogProb(of: id, logits)
                confidenceT.append(Self.now() - t)
                if s.model.tokenizer.isEOG(id) { break }
                d.advance(id)
                t = Self.now()
                let f = d.forcedTokens()
                for x in f { d.advance(x) }
                forcedT.append(Self.now() - t)
                produced += 1 + f.count
                t = Self.now()
                logits = try session.feed([id] + f)
                forward.append(Self.now() - t)
            }
        }
        for u in Self.utterances.prefix(6) { try run(s.automaton, u, sampling: .greedy) }
        let freeText = try JSONSchemaCompiler.compile(#"{"type":"object","properties":{"reply":{"type":"string"}},"required":["reply"]}"#)
        try run(freeText, "describe the kitchen in one sentence", sampling: SamplingParams(temperature: 1.0, seed: 5))
        let v = s.vocabulary
        let t0 = Self.now()
        let rebuilt = ConstraintVocabulary(tokenizer: s.model.tokenizer)
        let build = Self.now() - t0
        let frame = MemoryLayout<SchemaAutomaton.Frame>.stride
        print("""
            vocabulary: built in \(ms(build)), \(rebuilt.tableBytes / 1024) KiB of tables (\(v.trieNodeCount) trie nodes), shared by all requests
            per request: \(s.automaton.maxDepth * (v.maxTokenBytes + 1) * frame / 1024) KiB scan scratch + \(v.vocabSize / 8 / 1024) KiB per mask, \
            at most 128 cached masks (\(128 * v.vocabSize / 8 / 1024) KiB)
            """)
        print("""
            constraint cost over \(steps) steps (6 intents + 1 free-text reply):
              forward pass per step      median \(ms(median(forward))) p99 \(ms(p99(forward)))
              full mask (trie scan)      median \(ms(median(fullMask))) p99 \(ms(p99(fullMask))) (best of 3; slowest after \(worst.1.debugDescription))
              full mask inside strings   median \(ms(median(inStringFast))) p99 \(ms(p99(inStringFast))), without the string fast path median \(ms(median(inStringSlow))) p99 \(ms(p99(inStringSlow))) (\(inStringFast.count) states)
              applyMask from cache       median \(ms(median(applyCached))) p99 \(ms(p99(applyCached)))
              sample-then-verify         median \(ms(median(verify))) p99 \(ms(p99(verify))) mean \(ms(verify.reduce(0, +) / Double(verify.count))) (\(rejected) rejections)
              forced tokens              median \(ms(median(forcedT))) p99 \(ms(p99(forcedT)))
              confidence (masked lse)    median \(ms(median(confidenceT))) p99 \(ms(p99(confidenceT)))
            """)
    }
}
