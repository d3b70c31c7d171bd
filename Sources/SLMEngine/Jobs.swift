import SLMKernels
import SLMModel
import SLMConstraint
#if canImport(Glibc)
import Glibc
#endif
import SLMLimits

/// What a suggestion is.
public enum SuggestMode: String, Sendable, Equatable, CaseIterable {
    /// A short phrase: up to `maxWords` words, ending at a sentence end or a line break.
    case phrase
    /// One word: the rest of the word being typed, or the next word after a space
    /// (a keyboard's suggestion chips).
    case word
}

/// How to continue a prefix for a device UI.
public struct SuggestOptions: Sendable, Equatable {
    /// The floor under `minProb` by default: a suggestion the model gives less than one
    /// chance in a million (after what was typed) is noise, not a prediction; four-word
    /// phrases the model finds plausible are ~1e-2…1e-5.
    public static let defaultMinProb = Limits.suggestMinProb.defaultValue!

    /// Suggestions wanted (distinct).
    public var n = Int(Limits.suggestN.defaultValue!)
    /// Most tokens per suggestion.
    public var maxTokens = Int(Limits.suggestMaxTokens.defaultValue!)
    /// Most words per suggestion (a word starts after whitespace); 0: no limit. Phrase mode only.
    public var maxWords = Int(Limits.suggestMaxWords.defaultValue!)
    /// End a suggestion after a sentence end (. ! ?). Phrase mode only.
    public var stopAtSentence: Bool = true
    public var mode: SuggestMode = .phrase
    /// Suggestions less probable than this (given the typed text) are not searched for:
    /// fewer than `n` come back only when the model has nothing above it. In 0...1.
    public var minProb: Double = SuggestOptions.defaultMinProb
    /// Text the model reads before the prefix that is not part of what was typed (a form
    /// field's label, earlier fields). The prefix follows it after a space, or on the next
    /// line when it ends with a line break; suggestions continue the prefix.
    public var context: String?
    public var session: String?
    public var deadline: Double?

    public init(n: Int = Int(Limits.suggestN.defaultValue!), maxTokens: Int = Int(Limits.suggestMaxTokens.defaultValue!),
                maxWords: Int = Int(Limits.suggestMaxWords.defaultValue!), stopAtSentence: Bool = true,
                mode: SuggestMode = .phrase, minProb: Double = SuggestOptions.defaultMinProb, context: String? = nil,
                session: String? = nil, deadline: Double? = nil) {
        self.n = n
        self.maxTokens = maxTokens
        self.maxWords = maxWords
        self.stopAtSentence = stopAtSentence
        self.mode = mode
        self.minProb = minProb
        self.context = context
        self.session = session
        self.deadline = deadline
    }
}

/// One continuation and its probability under the model, given the typed text.
public struct Suggestion: Sendable, Equatable {
    /// Text to insert after the prefix (continues a partial last word when healed).
    public var text: String
    /// log P(suggestion | typed text): Σ log p of its tokens, the first one's renormalised
    /// over the tokens that agree with the healed bytes (word mode: times the probability
    /// that the word ends there).
    public var logprob: Double
    public var tokens: [Int32]
    public var probability: Double { exp(logprob) }
}

public struct SuggestResult: Sendable, Equatable {
    /// Best first, distinct texts.
    public var suggestions: [Suggestion]
    public var promptTokens: Int
    /// Prompt tokens whose KV came from the prefix cache.
    public var reusedTokens: Int
    /// Whether the prompt's last tokens were backed up over (prefix ended mid-word).
    public var healed: Bool
    /// How many tokens were backed up over; the first suggested token starts with their bytes.
    public var healedTokens: Int
    /// Batched forward passes the branches took (0 when every step was replayed).
    public var forwardPasses: Int = 0
    /// Greedy steps replayed from an earlier keystroke on the same healed context.
    public var replayedSteps: Int = 0
    public var ms: Double
}

/// Scores of `choose` options.
public struct ChooseResult: Sendable, Equatable {
    public struct Option: Sendable, Equatable {
        public var text: String
        /// Σ log p(option tokens | prompt).
        public var logprob: Double
        public var tokenCount: Int
        public var normalizedLogprob: Double { logprob / Double(max(1, tokenCount)) }
    }
    public var options: [Option]
    /// Index of the best option (by normalized log-probability when asked).
    public var best: Int
    public var promptTokens: Int
    public var reusedTokens: Int
    public var ms: Double
}

/// The output of a schema-constrained generation.
public struct ParseResult: Sendable, Equatable {
    /// Compact JSON text, valid under the schema when `complete`.
    public var text: String
    /// The root value was closed (false when max_tokens cut it short or it was interrupted).
    public var complete: Bool
    /// Why the job stopped before the root value closed, when it was cancelled, superseded
    /// or ran past its deadline mid-generation; nil otherwise. An interrupted parse is not a
    /// result: the server answers it with an error, never with the partial text.
    public var interrupted: FinishReason? = nil
    public var promptTokens: Int
    public var generatedTokens: Int
    /// Tokens the schema forced (appended without sampling).
    public var forcedTokens: Int
    public var forwardPasses: Int
    public var maskMs: Double
    public var ms: Double
    /// Per top-level field, how sure the model was of its value (see `FieldConfidence`).
    public var confidence: [FieldScore] = []
    /// The generated token ids (forced ones included).
    public var tokens: [Int32] = []
    /// Every sampled token's scores and every departure, for `ParseVerdict` (empty when the
    /// request did not ask for confidences).
    public var sampled: [SampledToken] = []
    public var departures: [Departure] = []
}

/// How a job ended.
public enum JobOutcome: Sendable {
    case suggest(SuggestResult)
    case choose(ChooseResult)
    case parse(ParseResult)
    /// Cancelled, superseded, past its deadline, or failed (with a message).
    case ended(FinishReason, String?)
}

/// A short request the engine thread runs to completion between generation steps.
final class Job: @unchecked Sendable {
    enum Kind {
        case suggest(text: String, SuggestOptions)
        case choose(promptIDs: [Int32], options: [[Int32]], texts: [String], normalize: Bool)
        case parse(promptIDs: [Int32], schema: String, automaton: SchemaAutomaton, maxTokens: Int, sampling: SamplingParams, confidence: Bool,
                   departures: DepartureFilter?, noNumbers: Bool)
    }
    let handle: RequestHandle
    let kind: Kind
    let submitted = monotonicSeconds()
    let deadline: Double?
    let session: String?
    let completion: @Sendable (JobOutcome) -> Void

    init(handle: RequestHandle, kind: Kind, deadline: Double?, session: String?, completion: @escaping @Sendable (JobOutcome) -> Void) {
        self.handle = handle
        self.kind = kind
        self.deadline = deadline
        self.session = session
        self.completion = completion
    }

    func fail(_ reason: FinishReason, _ message: String? = nil) { completion(.ended(reason, message)) }
}

extension Engine {
    // MARK: Submission

    /// Queues a `suggest`: up to `options.n` distinct short continuations of `prefix`,
    /// computed from the shared prefix KV with the branches batched in each pass.
    public func submitSuggest(prefix: String, options: SuggestOptions, owner: UInt32 = 0,
                              completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        guard Limits.suggestN.contains(Int64(options.n)) else { throw EngineError(.badRequest, "n must be in \(Limits.suggestN.rangeText)") }
        guard Limits.suggestMaxTokens.contains(Int64(options.maxTokens)) else {
            throw EngineError(.badRequest, "max_tokens must be in \(Limits.suggestMaxTokens.rangeText) for suggest")
        }
        guard Limits.suggestMaxWords.contains(Int64(options.maxWords)) else {
            throw EngineError(.badRequest, "max_words must be in \(Limits.suggestMaxWords.rangeText)")
        }
        guard Limits.suggestMinProb.contains(options.minProb) else {
            throw EngineError(.badRequest, "min_prob must be in \(Limits.suggestMinProb.rangeText)")
        }
        // An empty prefix is a cursor at the start of a field: it predicts first words.
        let ids = suggestContext(prefix: prefix, options).ids
        guard ids.count + options.maxTokens <= config.maxContext else {
            throw EngineError(.contextOverflow, "context + prefix (\(ids.count) tokens) + max_tokens exceed the context of \(config.maxContext)")
        }
        let need = kvBytes(tokens: ids.count) + (options.n + 2) * kvBytes(tokens: ids.count + options.maxTokens)
        guard need <= kvBudget else {
            throw EngineError(.overMemoryBudget, "suggest needs \(need) bytes of KV; the budget leaves \(kvBudget)")
        }
        return try enqueue(.suggest(text: prefix, options), deadline: options.deadline, session: options.session, owner: owner,
                           completion: completion)
    }

    /// Queues a `choose`: the log-probability of each option after `promptIDs`, all
    /// options scored in shared batched passes over one prompt prefill.
    public func submitChoose(promptIDs: [Int32], options: [[Int32]], texts: [String], normalize: Bool,
                             deadline: Double? = nil, owner: UInt32 = 0,
                             completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        guard !promptIDs.isEmpty else { throw EngineError(.badRequest, "the prompt is empty") }
        guard Limits.chooseOptions.contains(Int64(options.count)), options.count == texts.count else {
            throw EngineError(.badRequest, "options must have \(Limits.chooseOptions.rangeText) entries")
        }
        guard options.allSatisfy({ !$0.isEmpty }) else { throw EngineError(.badRequest, "an option is empty") }
        let longest = options.map(\.count).max()!
        guard promptIDs.count + longest <= config.maxContext else {
            throw EngineError(.contextOverflow, "prompt + longest option exceed the context of \(config.maxContext)")
        }
        let need = kvBytes(tokens: promptIDs.count) + options.reduce(0) { $0 + kvBytes(tokens: promptIDs.count + $1.count) }
        guard need <= kvBudget else {
            throw EngineError(.overMemoryBudget, "choose needs \(need) bytes of KV; the budget leaves \(kvBudget)")
        }
        return try enqueue(.choose(promptIDs: promptIDs, options: options, texts: texts, normalize: normalize),
                           deadline: deadline, session: nil, owner: owner, completion: completion)
    }

    /// Queues a schema-constrained generation: the output is JSON valid under `schema`
    /// (compiled by the caller with `JSONSchemaCompiler`), ending right after the root value.
    /// `confidence` scores every choice, `departures` (with it) finds what the model wanted
    /// where the schema refused it in those fields, `noNumbers` (the input states no number)
    /// keeps numbers out of values that may be null (see `ConstrainedGenerator`).
    public func submitParse(promptIDs: [Int32], schema: String, automaton: SchemaAutomaton, maxTokens: Int,
                            sampling: SamplingParams, deadline: Double? = nil, confidence: Bool = true,
                            departures: DepartureFilter? = nil, noNumbers: Bool = false, owner: UInt32 = 0,
                            completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        guard !promptIDs.isEmpty else { throw EngineError(.badRequest, "the prompt is empty") }
        guard maxTokens >= 1, maxTokens <= config.maxTokens else {
            throw EngineError(.badRequest, "max_tokens \(maxTokens) is outside 1...\(config.maxTokens)")
        }
        if let bad = sampling.invalidField { throw EngineError(.badRequest, bad) }
        guard promptIDs.count + maxTokens <= config.maxContext else {
            throw EngineError(.contextOverflow, "prompt (\(promptIDs.count) tokens) + max_tokens exceed the context of \(config.maxContext)")
        }
        let need = kvBytes(tokens: promptIDs.count + maxTokens)
        guard need <= kvBudget else {
            throw EngineError(.overMemoryBudget, "parse needs \(need) bytes of KV; the budget leaves \(kvBudget)")
        }
        return try enqueue(.parse(promptIDs: promptIDs, schema: schema, automaton: automaton, maxTokens: maxTokens, sampling: sampling,
                                  confidence: confidence, departures: departures, noNumbers: noNumbers),
                           deadline: deadline, session: nil, owner: owner, completion: completion)
    }

    private func enqueue(_ kind: Job.Kind, deadline: Double?, session: String?, owner: UInt32,
                         completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        let handle = RequestHandle(id: nextID.add(1, ordering: .relaxed).oldValue, owner: owner)
        let job = Job(handle: handle, kind: kind, deadline: deadline, session: session, completion: completion)
        let refusal: EngineError? = lock.withLock {
            if shared.stopping {
                // Counted like submit()'s refusals, so stats add up across ops.
                shared.stats.refused[EngineError.Code.shuttingDown, default: 0] += 1
                return EngineError(.shuttingDown, "the daemon is shutting down")
            }
            guard shared.queue.count + shared.jobs.count < config.maxQueued else {
                shared.stats.refused[EngineError.Code.busy, default: 0] += 1
                return EngineError(.busy, "\(shared.queue.count + shared.jobs.count) requests already queued (max_queued \(config.maxQueued))")
            }
            shared.jobs.append(job)
            lock.broadcast()
            return nil
        }
        if let refusal { throw refusal }
        if let session { supersede(session: session, with: handle) }
        return handle
    }

    // MARK: Execution (engine thread)

    func run(_ job: Job) {
        if job.handle.cancelRequested.load(ordering: .acquiring) {
            return job.fail(job.handle.superseded.load(ordering: .acquiring) ? .superseded : .cancelled)
        }
        switch job.kind {
        case .suggest(let text, let options):
            lock.withLock { shared.stats.suggestRequests += 1 }
            runSuggest(job, text: text, options)
        case .choose(let prompt, let options, let texts, let normalize):
            lock.withLock { shared.stats.chooseRequests += 1 }
            runChoose(job, prompt: prompt, options: options, texts: texts, normalize: normalize)
        case .parse(let prompt, let schema, let automaton, let maxTokens, let sampling, let confidence, let departures, let noNumbers):
            lock.withLock { shared.stats.parseRequests += 1 }
            runParse(job, prompt: prompt, schema: schema, automaton: automaton, maxTokens: maxTokens, sampling: sampling,
                     confidence: confidence, departures: departures, noNumbers: noNumbers)
        }
        lock.withLock {
            if let key = job.session, shared.sessions[key] === job.handle { shared.sessions[key] = nil }
        }
    }

    /// Why the job must stop now, if it must.
    func interruption(_ job: Job) -> FinishReason? {
        if job.handle.cancelRequested.load(ordering: .acquiring) {
            return job.handle.superseded.load(ordering: .acquiring) ? .superseded : .cancelled
        }
        if let d = job.deadline, monotonicSeconds() >= d { return .deadline }
        return nil
    }

    /// Feeds `tokens[from...]` into `cache` (positions continue from `cache.count`);
    /// returns a copy of the logits after the last token.
    func prefill(_ tokens: [Int32], from: Int, into cache: KVCache) throws(ModelError) -> [Float] {
        var i = from
        var last: [Float] = []
        while i < tokens.count {
            batch.clear()
            let end = min(tokens.count, i + batch.capacity)
            for j in i..<end { batch.add(tokens[j], position: j, cache: cache, logits: j == tokens.count - 1) }
            try runner.forward(batch)
            if end == tokens.count { last = Array(runner.logits(row: 0)) }
            i = end
        }
        batch.clear()
        return last
    }

    private func logSumExp(_ l: UnsafeBufferPointer<Float>) -> Double { LogitStats.logSumExp(l) }

    private func runSuggest(_ job: Job, text: String, _ o: SuggestOptions) {
        // The outcome is delivered after `suggest` has returned its KV (its defers ran), so
        // a client that reads stats after the reply sees the memory already released.
        job.completion(suggest(job, text: text, o))
    }

    /// Indices into `tokensByBytes` of the tokens whose bytes start with `prefix`
    /// (all non-control tokens for an empty prefix).
    func tokens(startingWith prefix: [UInt8]) -> Range<Int> {
        // Compares a token's first prefix.count bytes with the prefix: <0, 0 or >0.
        func order(_ idx: Int) -> Int {
            let i = Int(tokensByBytes[idx])
            let start = tokenByteOffsets[i], len = tokenByteOffsets[i + 1] - start
            for k in 0..<min(len, prefix.count) where tokenByteData[start + k] != prefix[k] {
                return tokenByteData[start + k] < prefix[k] ? -1 : 1
            }
            return len < prefix.count ? -1 : 0
        }
        func firstIndex(where pred: (Int) -> Bool) -> Int {
            var lo = 0, hi = tokensByBytes.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if pred(mid) { hi = mid } else { lo = mid + 1 }
            }
            return lo
        }
        let lo = firstIndex { order($0) >= 0 }
        let hi = firstIndex { order($0) > 0 }
        return lo..<max(lo, hi)
    }

    private func runParse(_ job: Job, prompt: [Int32], schema: String, automaton: SchemaAutomaton,
                          maxTokens: Int, sampling: SamplingParams, confidence: Bool, departures: DepartureFilter?, noNumbers: Bool) {
        let t0 = monotonicSeconds()
        // The instruction and examples are the same for every command of an intent: their KV
        // comes from the prefix cache, so only the utterance is computed.
        guard let (cache, reused) = acquireCache(for: prompt, capacity: prompt.count + maxTokens, owner: job.handle.owner) else {
            return job.fail(.error, "not enough memory for this request now; try again")
        }
        let session = Session(runner: runner, cache: cache, tokens: Array(prompt.prefix(reused)))
        defer { retire(cache, tokens: session.tokens, owner: job.handle.owner) }
        let vocabulary = constraintVocabulary()
        let compiled = compiledSchema(schema, automaton)
        let decoder = ConstrainedDecoder(automaton: compiled.automaton, vocabulary: vocabulary, sharedCache: compiled.masks)
        do {
            let (out, stats) = try ConstrainedGenerator.run(
                model: model, session: session, promptIDs: Array(prompt[reused...]), decoder: decoder,
                options: GenerationOptions(maxTokens: maxTokens, sampling: sampling), scoreTokens: confidence,
                departures: departures, noNumbers: noNumbers, interrupt: { interruption(job) }, now: monotonicSeconds)
            let interrupted: FinishReason? = [.cancelled, .superseded, .deadline].contains(out.finishReason) ? out.finishReason : nil
            job.completion(.parse(ParseResult(text: decoder.generatedText, complete: decoder.isComplete && out.finishReason == .stop,
                                              interrupted: interrupted,
                                              promptTokens: prompt.count, generatedTokens: out.generatedIDs.count,
                                              forcedTokens: stats.forcedTokens, forwardPasses: stats.forwardPasses,
                                              maskMs: stats.maskSeconds * 1000, ms: (monotonicSeconds() - t0) * 1000,
                                              confidence: FieldConfidence.compute(text: decoder.generatedBytes, sampled: stats.sampled),
                                              tokens: out.generatedIDs, sampled: stats.sampled, departures: stats.departures)))
        } catch {
            job.fail(.error, "\(error)")
        }
    }

    private func runChoose(_ job: Job, prompt: [Int32], options: [[Int32]], texts: [String], normalize: Bool) {
        let t0 = monotonicSeconds()
        guard let (base, reused) = acquireCache(for: prompt, capacity: prompt.count, owner: job.handle.owner) else {
            return job.fail(.error, "not enough memory for the prompt now; try again")
        }
        defer { retire(base, tokens: prompt, owner: job.handle.owner) }
        let first: [Float]
        do { first = try prefill(prompt, from: reused, into: base) } catch { return job.fail(.error, "\(error)") }
        let lse0 = first.withUnsafeBufferPointer { logSumExp($0) }
        var logprob = options.map { Double(first[Int($0[0])]) - lse0 }

        // Each option continues in its own copy of the prompt KV. Option tokens 0..<k−1
        // are fed (token j's logits score token j+1) in passes shared by all options.
        var caches: [KVCache?] = Array(repeating: nil, count: options.count)
        defer { for c in caches where c != nil { release(c!.bytes) } }
        var next = Array(repeating: 0, count: options.count)  // next option token to feed
        while true {
            if let r = interruption(job) { return job.fail(r) }
            batch.clear()
            var rows: [(option: Int, index: Int)] = []
            for (i, opt) in options.enumerated() {
                while next[i] < opt.count - 1 && rows.count < runner.maxLogits && !batch.isFull {
                    if caches[i] == nil {
                        guard reserve(kvBytes(tokens: prompt.count + opt.count)) else {
                            return job.fail(.error, "not enough memory to score the options now; try again")
                        }
                        let c = KVCache(config: model.config, capacity: prompt.count + opt.count)
                        c.copyPrefix(from: base, count: prompt.count)
                        caches[i] = c
                    }
                    batch.add(opt[next[i]], position: prompt.count + next[i], cache: caches[i]!, logits: true)
                    rows.append((i, next[i]))
                    next[i] += 1
                }
            }
            if rows.isEmpty { break }
            do { try runner.forward(batch) } catch { return job.fail(.error, "\(error)") }
            for (row, r) in rows.enumerated() {
                let l = UnsafeBufferPointer(runner.logits(row: row))
                logprob[r.option] += Double(l[Int(options[r.option][r.index + 1])]) - logSumExp(l)
            }
            batch.clear()
        }
        let scored = options.indices.map {
            ChooseResult.Option(text: texts[$0], logprob: logprob[$0], tokenCount: options[$0].count)
        }
        let key: (ChooseResult.Option) -> Double = { normalize ? $0.normalizedLogprob : $0.logprob }
        let best = scored.indices.max { key(scored[$0]) < key(scored[$1]) || (key(scored[$0]) == key(scored[$1]) && $0 > $1) }!
        job.completion(.choose(ChooseResult(options: scored, best: best, promptTokens: prompt.count, reusedTokens: reused,
                                            ms: (monotonicSeconds() - t0) * 1000)))
    }
}

@inline(__always) func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

/// Words in UTF-8 bytes: runs of non-space.
func wordCount(_ bytes: [UInt8]) -> Int {
    var n = 0
    var inWord = false
    for b in bytes {
        if isSpace(b) { inWord = false } else if !inWord { inWord = true; n += 1 }
    }
    return n
}

/// Decodes the longest valid UTF-8 prefix (a suggestion may stop inside a character).
func validUTF8Prefix(_ bytes: [UInt8]) -> String {
    var end = bytes.count
    while end > 0 {
        if let s = String(validating: bytes[0..<end], as: UTF8.self) { return s }
        end -= 1
    }
    return ""
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
