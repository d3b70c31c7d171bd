import Logging
import SLMEngine
import SLMKernels
import SLMModel
import SLMTokenizer
import SLMConstraint
import SLMProtocol
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import SLMLimits

/// Turns decoded frames into engine work and replies. Runs on the I/O thread; generation
/// results come back on the engine thread through each request's sink.
///
/// Privacy: prompts and completions are never logged at info or above; request logs
/// carry ids, ops, token counts and timings only.
final class RequestHandler: @unchecked Sendable {
    // @unchecked: `server` is set once before the I/O loop starts.
    let config: DaemonConfig
    let engine: any EngineService
    /// The model's tokenizer, template and facts, read once from the engine.
    let model: ModelFacts
    let logger: Logger
    let intents: IntentRegistry
    weak var server: Server?
    let serverVersion = SLMDVersion.string
    /// Where requests are tokenized and compiled, off the I/O thread.
    let preparation: PreparationThread
    /// `busy` refusals made here (the per-connection in-flight cap, a full preparation
    /// queue), added to the engine's in `requests_refused_busy` so the counter matches every
    /// `busy` a client gets, whichever layer refused.
    let refusedBusy = Atomic<Int>(0)

    init(config: DaemonConfig, engine: any EngineService, intents: IntentRegistry, logger: Logger) {
        self.config = config
        self.intents = intents
        self.engine = engine
        self.model = engine.modelFacts
        self.logger = logger
        // As many as the engine may queue: beyond that the engine would answer busy anyway.
        preparation = PreparationThread(capacity: config.engine.maxQueued)
    }

    /// Decodes one frame and answers it (I/O thread). Requests that cost little and never
    /// grow with their input (ping, hello, info, status, stats, cancel) are answered here;
    /// the rest are reserved on the connection (so duplicate ids, the in-flight cap and
    /// `cancel` apply at once) and handed to the preparation thread, or prepared here when
    /// small and that thread is idle (`preparesInline`).
    func handle(_ frame: Frame, on c: Connection) {
        TestFault.ioHasWork()
        let request: Request
        do {
            request = try Request(frame: frame)
        } catch {
            logger.info("bad request", metadata: ["conn": "\(c.serial)", "code": "\(error.code.name)"])
            c.enqueue(error.errorMessage.frame())
            return
        }
        let id = request.id
        func fail(_ code: ErrorCode, _ message: String) {
            c.enqueue(ErrorMessage(id: id, code: code, message: message).frame())
        }
        switch request.body {
        case .ping, .hello, .info, .status, .stats, .cancel, .intents:
            // A final frame under an id that is still in flight would be read as that
            // request's end.
            if c.isInFlight(id) {
                return fail(.duplicateID, "a request with id \(id) is still in flight on this connection")
            }
            answerNow(request, on: c)
        default:
            switch c.reserve(id, limit: config.maxInflightPerConnection) {
            case .ok: break
            case .duplicate: return fail(.duplicateID, "a request with id \(id) is still in flight on this connection")
            case .full:
                refusedBusy.add(1, ordering: .relaxed)
                return fail(.busy, "this connection already has \(config.maxInflightPerConnection) requests in flight (max_inflight_per_connection)")
            }
            let work: @Sendable () -> Void = { [self] in
                let (closed, cancelled) = c.abandoned(id)
                if closed {
                    c.unreserve(id)
                } else if cancelled {
                    finish(id, on: c, ErrorMessage(id: id, code: .cancelled, message: "cancelled before generation started").frame())
                } else {
                    prepare(request, on: c)
                }
            }
            if Self.preparesInline(request.body) && preparation.runIfIdle(work) { return }
            if !preparation.submit(work) {
                c.unreserve(id)
                refusedBusy.add(1, ordering: .relaxed)
                fail(.busy, "\(preparation.capacity) requests are already waiting to be prepared; retry later")
            }
        }
    }

    /// Prompt bytes up to which a `complete` (without a schema) or a `suggest` is prepared
    /// on the I/O thread when the preparation thread is idle: tokenizing that much is tens
    /// of microseconds, and handing it over cost a thread wake-up on the way to the engine
    /// (perf sched, a 16-token prompt after 100 ms idle: ~0.17 ms from the hand-over to the
    /// engine's wake-up). Larger or costlier requests always queue, so the I/O thread's work
    /// per request stays bounded.
    static let inlinePreparationBytes = 1024

    /// Whether `body` is cheap enough to prepare on the I/O thread (`inlinePreparationBytes`).
    static func preparesInline(_ body: RequestBody) -> Bool {
        switch body {
        case .complete(let r):
            return r.options.schema == nil && r.prompt.utf8.count <= inlinePreparationBytes
        case .suggest(let r):
            return r.prefix.utf8.count + (r.context?.utf8.count ?? 0) <= inlinePreparationBytes
        default:
            return false
        }
    }

    /// Ends a reserved request that never reached the engine with `frame` (any thread).
    private func finish(_ id: RequestID, on c: Connection, _ frame: Frame) {
        c.enqueue(frame, finishing: id)
        c.unreserve(id)
        server?.wake()
    }

    private func answerNow(_ request: Request, on c: Connection) {
        let id = request.id
        func reply(_ body: ReplyBody) { c.enqueue(Reply(id: id, body).frame()) }
        switch request.body {
        case .ping:
            reply(.ping)
        case .hello(let h):
            guard h.maxVersion.map({ $0 >= 1 }) ?? true else {
                c.enqueue(ErrorMessage(id: id, code: .unsupportedVersion,
                                       message: "client supports up to version \(h.maxVersion!); this server speaks version \(SLMProtocolVersion.current)").frame())
                return
            }
            reply(.hello(serverInfo()))
        case .info:
            reply(.info(serverInfo()))
        case .status:
            reply(.status(status()))
        case .stats:
            reply(.stats(stats()))
        case .intents:
            reply(.intents(intents.all.map { IntentInfo(name: $0.name, description: $0.description, schema: $0.declaredSchemaText) }))
        case .cancel(let x):
            if c.cancelReserved(x.target) { return reply(.cancel(cancelled: true)) }
            let handle = c.shared.withLock { $0.inflight[x.target] }
            let cancelled = handle.map { engine.cancel($0) } ?? false
            reply(.cancel(cancelled: cancelled))
        default:
            preconditionFailure("answerNow(\(request.body)) is not an immediate request")
        }
    }

    /// Tokenizes, compiles and submits a reserved request (preparation thread). Every
    /// path ends the reservation: a reply or error through `finish`, or a submitted
    /// request registered by `track`.
    private func prepare(_ request: Request, on c: Connection) {
        let id = request.id
        let owner = c.owner
        func reply(_ body: ReplyBody) { finish(id, on: c, Reply(id: id, body).frame()) }
        func fail(_ code: ErrorCode, _ message: String) {
            finish(id, on: c, ErrorMessage(id: id, code: code, message: message).frame())
        }
        switch request.body {
        case .ping, .hello, .info, .status, .stats, .cancel, .intents:
            preconditionFailure("immediate requests are answered on the I/O thread")
        case .tokenize(let t):
            reply(.tokenize(ids: model.tokenizer.encode(t.text, parseSpecial: t.parseSpecial).map(Int.init)))
        case .detokenize(let d):
            let vocab = model.vocabSize
            if let bad = d.ids.firstIndex(where: { $0 < 0 || $0 >= vocab }) {
                fail(.badField, "field 'ids[\(bad)]': token id \(d.ids[bad]) is outside the vocabulary 0..<\(vocab)")
                return
            }
            reply(.detokenize(text: model.tokenizer.decode(d.ids.map { Int32($0) })))
        case .complete(let r):
            var ids = model.tokenizer.encode(r.prompt, parseSpecial: r.parseSpecial)
            if model.tokenizer.addBOS, let bos = model.tokenizer.bosID { ids.insert(bos, at: 0) }
            generate(id: id, op: .complete, promptIDs: ids, options: r.options, on: c)
        case .suggest(let r):
            runJob(id: id, on: c) { completion throws(EngineError) in
                try engine.submitSuggest(
                    prefix: r.prefix,
                    options: SuggestOptions(n: r.n, maxTokens: r.maxTokens, maxWords: r.maxWords, stopAtSentence: r.stopAtSentence,
                                            mode: r.mode == .word ? .word : .phrase,
                                            minProb: r.minProb ?? SuggestOptions.defaultMinProb, context: r.context,
                                            session: r.session.map { Self.scoped($0, owner: owner) },
                                            deadline: r.deadlineMS.map { monotonicSeconds() + Double($0) / 1000 }),
                    owner: owner, completion: completion)
            }
        case .choose(let r):
            let promptIDs = model.tokenizer.encode(r.prompt, parseSpecial: r.parseSpecial)
            // Checked before the options are tokenized with the prompt (up to 32 joint
            // tokenizations): a prompt that cannot fit is refused for the price of one.
            guard promptIDs.count < config.engine.maxContext else {
                return fail(.contextOverflow, "the prompt (\(promptIDs.count) tokens) leaves no room for an option in the context of \(config.engine.maxContext) tokens")
            }
            // An option's tokens are what follows the prompt's tokens when prompt and option
            // are tokenized together (so " positive" after "Sentiment:" is scored the way
            // the model would write it); when the joint tokenization disagrees at the seam,
            // the option is tokenized alone.
            let options = r.options.map { text -> [Int32] in
                let joint = model.tokenizer.encode(r.prompt + text, parseSpecial: r.parseSpecial)
                if joint.count > promptIDs.count, joint.starts(with: promptIDs) { return Array(joint[promptIDs.count...]) }
                return model.tokenizer.encode(text, parseSpecial: false)
            }
            runJob(id: id, on: c) { completion throws(EngineError) in
                try engine.submitChoose(promptIDs: promptIDs, options: options, texts: r.options, normalize: r.normalize,
                                        deadline: nil, owner: owner, completion: completion)
            }
        case .parse(let r):
            let automaton: SchemaAutomaton, schemaText: String, instruction: String?
            let examples: [(utterance: String, output: String)]
            var maxTokens = r.maxTokens
            var synonyms = Synonyms.none
            var minMatchScore = r.minMatchScore, confirmBelow = r.confirmBelow
            if let name = r.intent {
                guard let intent = intents.intent(named: name) else {
                    let known = intents.names
                    return fail(.badField, "field 'intent': unknown intent '\(name)' (" + (known.isEmpty ? "no intents are loaded" : "loaded: " + known.joined(separator: ", ")) + ")")
                }
                automaton = intent.automaton
                schemaText = intent.schemaText
                synonyms = intent.synonyms
                instruction = r.instruction ?? intent.instruction
                examples = r.examples.isEmpty ? intent.examples : r.examples.map { ($0.utterance, canonical(OrderedJSON($0.output), schema: intent.automaton.schema).compactText) }
                maxTokens = maxTokens ?? intent.maxTokens
                minMatchScore = minMatchScore ?? intent.minMatchScore
                confirmBelow = confirmBelow ?? intent.confirmBelow
            } else {
                do {
                    let schema = try OrderedJSON(parsing: r.schema ?? "")
                    if let table = r.synonyms {
                        do { synonyms = try Synonyms(OrderedJSON(table), schema: schema) } catch {
                            return fail(.badField, "field '\(error.path)': \(error.message)")
                        }
                    }
                    let decoding = synonyms.decodingSchema(schema)
                    schemaText = decoding.compactText
                    automaton = try JSONSchemaCompiler.compile(schemaText)
                } catch let e as SchemaError {
                    return fail(.badField, "field 'schema': \(e)")
                } catch {
                    return fail(.badField, "field 'schema': \(SchemaError(.invalidJSON, path: "#", "\(error)"))")
                }
                instruction = r.instruction
                examples = r.examples.map { ($0.utterance, canonical(OrderedJSON($0.output), schema: automaton.schema).compactText) }
            }
            let ids: [Int32]
            do {
                ids = try engine.parsePrompt(utterance: r.utterance, instruction: instruction, examples: examples)
            } catch {
                switch error {
                case .noChatTemplate: return fail(.unsupported, "this model has no chat template slmd can render")
                case .controlTextInUtterance: return fail(.badField, "field 'utterance': contains control-token text")
                case .controlTextInExamplesOrInstruction:
                    return fail(.badField, "field 'examples' or 'instruction': contains control-token text")
                }
            }
            var sampling = SamplingParams.greedy
            if let t = r.temperature, t > 0 { sampling = SamplingParams(temperature: Float(t), seed: UInt64.random(in: 0...UInt64.max)) }
            let limit = min(maxTokens ?? Int(Limits.parseMaxTokens.defaultValue!), config.engine.maxTokens)
            let deadline = r.deadlineMS.map { monotonicSeconds() + Double($0) / 1000 }
            let judging = ParseJudging(utterance: r.utterance, schema: automaton.schema, synonyms: synonyms,
                                       minMatchScore: minMatchScore ?? ParseVerdict.defaultMinMatchScore,
                                       confirmBelow: confirmBelow ?? ParseVerdict.defaultConfirmBelow)
            runJob(id: id, on: c, intent: r.intent, returnTokens: r.returnTokens, judging: judging) { completion throws(EngineError) in
                try engine.submitParse(promptIDs: ids, schema: schemaText, automaton: automaton, maxTokens: limit,
                                       sampling: sampling, deadline: deadline, confidence: true,
                                       departures: DepartureFilter(schema: automaton.schema, utterance: r.utterance),
                                       noNumbers: !ParseVerdict.statesNumber(r.utterance), owner: owner, completion: completion)
            }
        case .chat(let r):
            let template: ChatTemplate
            switch model.chatTemplate {
            case .success(let t): template = t
            case .failure(let e):
                fail(.unsupported, "this model has no chat template slmd can render: \(e)")
                return
            }
            // Message text is content, never structure: control-token text inside it (e.g.
            // "<|im_end|>") would let a user forge turns, so it is refused.
            for (i, m) in r.messages.enumerated() {
                if model.tokenizer.encode(m.content, parseSpecial: true).contains(where: { model.tokenizer.isControl($0) }) {
                    fail(.badField, "field 'messages[\(i)].content': contains control-token text")
                    return
                }
            }
            let rendered = template.render(r.messages.map { ChatMessage(role: $0.role.rawValue, content: $0.content) })
            var ids = model.tokenizer.encode(rendered, parseSpecial: true)
            if model.tokenizer.addBOS, let bos = model.tokenizer.bosID { ids.insert(bos, at: 0) }
            generate(id: id, op: .chat, promptIDs: ids, options: r.options, on: c)
        }
    }

    /// A client's session key in the engine: sessions are per peer uid, so a client can
    /// neither supersede another user's request nor reuse what it cached.
    static func scoped(_ session: String, owner: UInt32) -> String { "\(owner):\(session)" }

    private func generate(id: RequestID, op: Op, promptIDs: [Int32], options o: SLMProtocol.GenerationOptions, on c: Connection) {
        func fail(_ code: ErrorCode, _ message: String) {
            finish(id, on: c, ErrorMessage(id: id, code: code, message: message).frame())
        }
        guard !promptIDs.isEmpty else { return fail(.badField, "field 'prompt': the prompt is empty") }
        let maxTokens = o.maxTokens ?? min(256, config.engine.maxTokens)
        guard maxTokens >= 1 && maxTokens <= config.engine.maxTokens else {
            return fail(.badField, "field 'max_tokens': \(maxTokens) is above this server's max_tokens \(config.engine.maxTokens)")
        }
        var sampling = SamplingParams()
        if let t = o.temperature { sampling.temperature = Float(t) }
        if let k = o.topK { sampling.topK = k }
        if let p = o.topP { sampling.topP = Float(p) }
        if let p = o.minP { sampling.minP = Float(p) }
        if let r = o.repeatPenalty { sampling.repeatPenalty = Float(r) }
        if let w = o.repeatWindow { sampling.repeatWindow = w }
        // Without a seed each request draws its own, as users of a sampling API expect;
        // with one, the output is reproducible.
        sampling.seed = o.seed ?? UInt64.random(in: 0...UInt64.max)
        if let bad = sampling.invalidField { return fail(.badField, bad) }
        let deadline: Double? = o.deadlineMS.map { monotonicSeconds() + Double($0) / 1000 }
        if let schema = o.schema {
            return generateConstrained(id: id, op: op, promptIDs: promptIDs, schema: schema, maxTokens: maxTokens,
                                       sampling: sampling, deadline: deadline, stream: o.stream, on: c)
        }
        let request = GenerationRequest(promptIDs: promptIDs,
                                        options: GenerationOptions(maxTokens: maxTokens, sampling: sampling, stop: o.stop),
                                        deadline: deadline, stream: o.stream,
                                        session: o.session.map { Self.scoped($0, owner: c.owner) }, owner: c.owner)
        let counter = TokenCounter()
        let server = self.server
        let logger = self.logger
        let sink: @Sendable (EngineEvent) -> Void = { [weak c] event in
            guard let c else { return }
            switch event {
            case .text(let text, let tokens):
                let total = counter.add(tokens)
                c.enqueue(Event(id: id, text: text, tokenCount: total).frame())
            case .finished(let done):
                c.enqueue(Self.finalFrame(id: id, op: op, done, stream: request.stream), finishing: id)
                // The socket thread sends the reply while this (engine) thread logs: the log
                // line (formatted and written) was ~0.07 ms of the wait for a reply. Woken on
                // this thread's CPU (where the client and the socket thread usually run), it
                // only ran once this one blocked: `perf sched` showed it waiting 0.075-0.097
                // ms behind the log (EEVDF does not preempt for a wakee), so give it the CPU
                // first. Alternating daemon runs (x86-avx2, 4 x 30 requests each), client time
                // to first token minus the server's: 0.65-0.71 -> 0.64-0.67 ms in a noisy
                // phase, 0.55-0.56 -> 0.53-0.56 in a quiet one: small, never worse.
                server?.wake()
                sched_yield()
                logger.info("request finished", metadata: [
                    "conn": "\(c.serial)", "request": "\(id)", "op": "\(op.rawValue)", "finish": "\(done.finishReason.rawValue)",
                    "prompt_tokens": "\(done.promptTokens)", "generated_tokens": "\(done.generatedTokens)",
                    "ttft_ms": "\(Int(done.ttftMs))", "total_ms": "\(Int(done.totalMs))"])
                return
            }
            server?.wake()
        }
        track(id: id, on: c) { () throws(EngineError) in try engine.submit(request, sink: sink) }
    }

    /// Submits a short job (suggest, choose) whose single result ends the request.
    private func runJob(id: RequestID, on c: Connection, intent: String? = nil, returnTokens: Bool = false, judging: ParseJudging? = nil,
                        _ submit: (@escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle) {
        let server = self.server
        let completion: @Sendable (JobOutcome) -> Void = { [weak c] outcome in
            guard let c else { return }
            c.enqueue(Self.jobFrame(id: id, outcome, intent: intent, returnTokens: returnTokens, judging: judging), finishing: id)
            server?.wake()
        }
        track(id: id, on: c) { () throws(EngineError) in try submit(completion) }
    }

    /// Runs `submit` for `id`, already reserved on the connection, and registers the
    /// handle, so ids stay unique while in flight, the per-connection cap holds, and a
    /// disconnect or an early `cancel` cancels the request.
    private func track(id: RequestID, on c: Connection, _ submit: () throws(EngineError) -> RequestHandle) {
        do {
            let handle = try submit()
            if c.register(id, handle) { engine.cancel(handle) }
        } catch {
            finish(id, on: c, ErrorMessage(id: id, code: Self.code(error), message: error.description).frame())
        }
    }

    static func code(_ error: EngineError) -> ErrorCode {
        switch error.code {
        case .busy: return .busy
        case .overMemoryBudget: return .overMemoryBudget
        case .contextOverflow: return .contextOverflow
        case .shuttingDown: return .shuttingDown
        case .badRequest: return .badField
        }
    }

    static func jobFrame(id: RequestID, _ outcome: JobOutcome, intent: String? = nil, returnTokens: Bool = false,
                         judging: ParseJudging? = nil) -> Frame {
        switch outcome {
        case .suggest(let r):
            return Reply(id: id, .suggest(SLMProtocol.SuggestResult(
                suggestions: r.suggestions.map { .init(text: $0.text, prob: $0.probability, logprob: $0.logprob, tokens: $0.tokens.count) },
                healed: r.healed, promptTokens: r.promptTokens, reusedTokens: r.reusedTokens, ms: r.ms))).frame()
        case .choose(let r):
            return Reply(id: id, .choose(SLMProtocol.ChooseResult(
                best: r.options[r.best].text, bestIndex: r.best,
                options: r.options.map { .init(text: $0.text, logprob: $0.logprob, normalizedLogprob: $0.normalizedLogprob, tokens: $0.tokenCount) },
                ms: r.ms))).frame()
        case .parse(let r):
            // Cancelled or past its deadline while decoding: the same error as before it
            // started, never a result the client already gave up on.
            if let reason = r.interrupted { return jobFrame(id: id, .ended(reason, nil)) }
            let reply = judging.map { $0.judge(r) } ?? ParseJudging.unjudged(r)
            let value = reply.matched ? ((try? JSONValue.parse(Array(reply.text.utf8))) ?? .null) : .null
            return Reply(id: id, .parse(SLMProtocol.ParseResult(
                result: value, text: reply.text, complete: r.complete, generatedTokens: r.generatedTokens, ms: r.ms,
                confidence: reply.confidence,
                intent: intent, tokens: returnTokens ? r.tokens.map(Int.init) : nil, matched: reply.matched,
                matchScore: reply.score, violations: reply.violations, needsConfirmation: reply.confirm))).frame()
        case .ended(let reason, let message):
            let code: ErrorCode
            switch reason {
            case .cancelled: code = .cancelled
            case .deadline: code = .deadlineExceeded
            case .superseded: code = .cancelled
            default: code = .internal
            }
            let text = reason == .superseded ? "superseded by a newer request on the same session" : (message ?? reason.rawValue)
            return ErrorMessage(id: id, code: code, message: text).frame()
        }
    }

    /// The terminal frame of a generation. A request that ended before producing anything
    /// because it was cancelled or ran out of time gets an error frame (it never started,
    /// as far as the client can tell); everything else gets a reply with its finish reason.
    /// `complete`/`chat` with a `schema`: the constrained generation runs as a job (like
    /// `parse`, without parse's prompt), and its output is sent as a generation result.
    /// Stop strings do not apply; the schema decides where the output ends.
    private func generateConstrained(id: RequestID, op: Op, promptIDs: [Int32], schema: String, maxTokens: Int,
                                     sampling: SamplingParams, deadline: Double?, stream: Bool, on c: Connection) {
        let automaton: SchemaAutomaton
        do {
            automaton = try JSONSchemaCompiler.compile(schema)
        } catch {
            finish(id, on: c, ErrorMessage(id: id, code: .badField, message: "field 'schema': \(error)").frame())
            return
        }
        let server = self.server
        let t0 = monotonicSeconds()
        track(id: id, on: c) { () throws(EngineError) in
            try engine.submitParse(promptIDs: promptIDs, schema: schema, automaton: automaton, maxTokens: maxTokens,
                                   sampling: sampling, deadline: deadline, confidence: false, departures: nil,
                                   noNumbers: false, owner: c.owner) { [weak c] outcome in
                guard let c else { return }
                guard case .parse(let r) = outcome else {
                    c.enqueue(Self.jobFrame(id: id, outcome), finishing: id)
                    server?.wake()
                    return
                }
                if stream, !r.text.isEmpty { c.enqueue(Event(id: id, text: r.text, tokenCount: r.generatedTokens).frame()) }
                let total = (monotonicSeconds() - t0) * 1000
                let usage = Usage(promptTokens: r.promptTokens, generatedTokens: r.generatedTokens, ttftMS: total,
                                  tokensPerSecond: r.ms > 0 ? Double(r.generatedTokens) / (r.ms / 1000) : 0, totalMS: total)
                // Interrupted mid-generation: a reply with that reason and the text so far, as
                // for unconstrained generation (§10).
                let reason: SLMProtocol.FinishReason = r.interrupted.map { SLMProtocol.FinishReason(rawValue: $0.rawValue) }
                    ?? (r.complete ? .stop : .length)
                let result = GenerationResult(text: stream ? nil : r.text, finishReason: reason, usage: usage)
                c.enqueue(Reply(id: id, op == .chat ? .chat(result) : .complete(result)).frame(), finishing: id)
                server?.wake()
            }
        }
    }

    static func finalFrame(id: RequestID, op: Op, _ done: Completion, stream: Bool) -> Frame {
        if done.generatedTokens == 0 {
            switch done.finishReason {
            case .cancelled: return ErrorMessage(id: id, code: .cancelled, message: "cancelled before generation started").frame()
            case .deadline: return ErrorMessage(id: id, code: .deadlineExceeded, message: "the deadline passed before generation started").frame()
            case .error: return ErrorMessage(id: id, code: .internal, message: done.errorMessage ?? "internal error").frame()
            default: break
            }
        }
        let usage = Usage(promptTokens: done.promptTokens, generatedTokens: done.generatedTokens, ttftMS: done.ttftMs,
                          tokensPerSecond: done.tokensPerSecond, totalMS: done.totalMs)
        let result = GenerationResult(text: stream ? nil : done.text,
                                      finishReason: SLMProtocol.FinishReason(rawValue: done.finishReason.rawValue),
                                      usage: usage, message: done.errorMessage)
        return Reply(id: id, op == .chat ? .chat(result) : .complete(result)).frame()
    }
}

/// Cumulative token count for a request's events (touched by the engine thread only).
final class TokenCounter: @unchecked Sendable {
    private var total = 0
    func add(_ n: Int) -> Int { total += n; return total }
}
