// Over ~500 lines on purpose: every reply body's type, encoder and decoder sit side by side,
// one case per op, so adding a member touches one file and the round-trip test covers it.

/// Why a generation ended. A struct over the wire string so that reasons added later
/// (e.g. `superseded` for session requests) decode on older clients.
public struct FinishReason: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    /// The wire string.
    public let rawValue: String
    /// Wraps a wire value, known or not.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// A short human-readable form for logs.
    public var description: String { rawValue }

    /// The model produced end-of-generation or a stop string matched.
    public static let stop = FinishReason(rawValue: "stop")
    /// `max_tokens` (or the context) was reached.
    public static let length = FinishReason(rawValue: "length")
    /// A `cancel` request (or the client's disconnect) stopped it.
    public static let cancelled = FinishReason(rawValue: "cancelled")
    /// `deadline_ms` passed.
    public static let deadline = FinishReason(rawValue: "deadline")
    /// The engine failed mid-generation; `GenerationResult.message` says why.
    public static let error = FinishReason(rawValue: "error")
    /// A newer request on the same `session` replaced this one.
    public static let superseded = FinishReason(rawValue: "superseded")
}

/// Token counts and timings of one generation.
public struct Usage: Sendable, Equatable {
    /// Tokens of the (rendered) prompt.
    public var promptTokens: Int
    /// Tokens generated.
    public var generatedTokens: Int
    /// Time from receipt of the request to the first generated token, in ms.
    public var ttftMS: Double
    /// Generated tokens per second of decoding (excluding prompt processing).
    public var tokensPerSecond: Double
    /// Time from receipt to the final reply, in ms.
    public var totalMS: Double

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(promptTokens: Int, generatedTokens: Int, ttftMS: Double, tokensPerSecond: Double, totalMS: Double) {
        self.promptTokens = promptTokens
        self.generatedTokens = generatedTokens
        self.ttftMS = ttftMS
        self.tokensPerSecond = tokensPerSecond
        self.totalMS = totalMS
    }
}

/// The final reply of `complete` and `chat`.
public struct GenerationResult: Sendable, Equatable {
    /// The whole generated text when not streaming; nil when streamed (the events
    /// carried it).
    public var text: String?
    /// Why generation ended.
    public var finishReason: FinishReason
    /// Token counts and timings.
    public var usage: Usage
    /// Detail for finish reason `error`.
    public var message: String?

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(text: String?, finishReason: FinishReason, usage: Usage, message: String? = nil) {
        self.text = text
        self.finishReason = finishReason
        self.usage = usage
        self.message = message
    }
}

/// The reply to `hello` and `info`. Model info and limits are open objects the server
/// fills; well-known keys are listed in docs/PROTOCOL.md.
public struct ServerInfo: Sendable, Equatable {
    /// The protocol version the server will speak on this connection.
    public var protocolVersion: Int
    /// The daemon's version string.
    public var serverVersion: String
    /// e.g. `name`, `architecture`, `quantization`, `context_length`, `vocab_size`, `has_chat_template`.
    public var model: JSONObject
    /// e.g. `max_frame_bytes`, `max_tokens`, `max_context`, `max_concurrent`, `max_queue`.
    public var limits: JSONObject

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(protocolVersion: Int, serverVersion: String, model: JSONObject, limits: JSONObject) {
        self.protocolVersion = protocolVersion
        self.serverVersion = serverVersion
        self.model = model
        self.limits = limits
    }
}

/// The reply to `stats`: counters (monotonic), gauges (current values) and percentiles
/// (e.g. `"ttft_ms": {"p50": 41.0, "p90": 80.5, "p99": 120.0}`).
public struct Stats: Sendable, Equatable {
    /// Monotonic counters, e.g. `requests_total`.
    public var counters: [String: Int64]
    /// Current values, e.g. `queue_depth`, `memory_bytes`.
    public var gauges: [String: Double]
    /// Distributions by name, each `p50`/`p90`/`p99`-style keys to values.
    public var percentiles: [String: [String: Double]]

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(counters: [String: Int64] = [:], gauges: [String: Double] = [:],
                percentiles: [String: [String: Double]] = [:]) {
        self.counters = counters
        self.gauges = gauges
        self.percentiles = percentiles
    }
}

/// One loaded intent, as the `intents` op lists it.
public struct IntentInfo: Sendable, Equatable {
    /// The name `parse` takes in `intent`.
    public var name: String
    /// What the intent is for, from its file; nil when the file gives none.
    public var description: String?
    /// The intent's JSON Schema as compact JSON text, in its own key order (the order of a
    /// parse's output); synonyms are not added to its enums (a reply holds only these values).
    public var schema: String
    /// Memberwise initialiser.
    public init(name: String, description: String? = nil, schema: String) {
        self.name = name
        self.description = description
        self.schema = schema
    }
}

/// The typed body of a reply, by the op it answers.
public enum ReplyBody: Sendable, Equatable {
    case hello(ServerInfo)
    case info(ServerInfo)
    case complete(GenerationResult)
    case chat(GenerationResult)
    case tokenize(ids: [Int])
    case detokenize(text: String)
    /// Whether the target was found in flight and cancelled (false: unknown or already done).
    case cancel(cancelled: Bool)
    /// An open object the server fills (state, model, queue depth, uptime, ...).
    case status(JSONObject)
    case stats(Stats)
    case ping
    case suggest(SuggestResult)
    case choose(ChooseResult)
    case parse(ParseResult)
    /// The loaded intents, sorted by name.
    case intents([IntentInfo])

    /// The op this body belongs to (the wire `op` member).
    public var op: Op {
        switch self {
        case .intents: return .intents
        case .hello: return .hello
        case .info: return .info
        case .complete: return .complete
        case .chat: return .chat
        case .tokenize: return .tokenize
        case .detokenize: return .detokenize
        case .cancel: return .cancel
        case .status: return .status
        case .stats: return .stats
        case .ping: return .ping
        case .suggest: return .suggest
        case .choose: return .choose
        case .parse: return .parse
        }
    }
}

/// `parse` reply: the JSON the schema-constrained generation produced, and whether it is a
/// command of the schema at all.
public struct ParseResult: Sendable, Equatable {
    /// The command, valid under the schema, when `matched`; null otherwise.
    public var result: JSONValue
    /// What the model produced as compact JSON text (schema key order), with synonyms
    /// mapped to their values and every violated field null. Not a command to act on when
    /// `matched` is false.
    public var text: String
    /// False only when max_tokens cut the output short (then `result` is null).
    public var complete: Bool
    /// Whether the utterance is a command of the schema: complete, no violations, and
    /// `matchScore` at least the request's operating point. A reply from a server older
    /// than this member reads as matched when complete.
    public var matched: Bool
    /// Geometric mean over the fields of the model's own probability of its values, before
    /// the schema constrained them, in [0, 1] (see ParseVerdict).
    public var matchScore: Double?
    /// Values the model wanted that the schema cannot hold.
    public var violations: [Violation]
    /// Fields of a matched result whose confidence is below the request's `confirm_below`.
    public var needsConfirmation: [String]

    public struct Violation: Sendable, Equatable {
        public var field: String
        /// The value the model wanted (e.g. 180, "dishwasher").
        public var wanted: JSONValue
        public var reason: String
        public init(field: String, wanted: JSONValue, reason: String) { self.field = field; self.wanted = wanted; self.reason = reason }
    }
    public var generatedTokens: Int
    public var ms: Double
    /// Per top-level field: the probability the model gave the value it chose (for an enum,
    /// the mass of the chosen value among the allowed ones), in [0, 1].
    public var confidence: [String: Double]
    /// The intent that was used, when the request named one.
    public var intent: String?
    /// Generated token ids, when the request asked for them.
    public var tokens: [Int]?
    public init(result: JSONValue, text: String, complete: Bool, generatedTokens: Int, ms: Double,
                confidence: [String: Double] = [:], intent: String? = nil, tokens: [Int]? = nil,
                matched: Bool? = nil, matchScore: Double? = nil, violations: [Violation] = [], needsConfirmation: [String] = []) {
        self.result = result; self.text = text; self.complete = complete; self.generatedTokens = generatedTokens; self.ms = ms
        self.confidence = confidence; self.intent = intent; self.tokens = tokens
        self.matched = matched ?? complete; self.matchScore = matchScore; self.violations = violations
        self.needsConfirmation = needsConfirmation
    }
}

/// `suggest` reply: continuations of the prefix, most probable first, distinct.
public struct SuggestResult: Sendable, Equatable {
    public struct Suggestion: Sendable, Equatable {
        /// Text to insert at the cursor (continues a partial word when `healed`).
        public var text: String
        /// Probability of the whole continuation under the model.
        public var prob: Double
        public var logprob: Double
        public var tokens: Int
        public init(text: String, prob: Double, logprob: Double, tokens: Int) {
            self.text = text; self.prob = prob; self.logprob = logprob; self.tokens = tokens
        }
    }
    public var suggestions: [Suggestion]
    /// Whether the prefix's last token was backed up over (token healing).
    public var healed: Bool
    public var promptTokens: Int
    /// Prompt tokens served from the prefix cache.
    public var reusedTokens: Int
    public var ms: Double
    public init(suggestions: [Suggestion], healed: Bool, promptTokens: Int, reusedTokens: Int, ms: Double) {
        self.suggestions = suggestions; self.healed = healed; self.promptTokens = promptTokens
        self.reusedTokens = reusedTokens; self.ms = ms
    }
}

/// `choose` reply: each option's log-probability after the prompt, and the best.
public struct ChooseResult: Sendable, Equatable {
    public struct Option: Sendable, Equatable {
        public var text: String
        public var logprob: Double
        /// logprob / tokens.
        public var normalizedLogprob: Double
        public var tokens: Int
        public init(text: String, logprob: Double, normalizedLogprob: Double, tokens: Int) {
            self.text = text; self.logprob = logprob; self.normalizedLogprob = normalizedLogprob; self.tokens = tokens
        }
    }
    public var best: String
    public var bestIndex: Int
    public var options: [Option]
    public var ms: Double
    public init(best: String, bestIndex: Int, options: [Option], ms: Double) {
        self.best = best; self.bestIndex = bestIndex; self.options = options; self.ms = ms
    }
}

/// A server reply (frame type 2): the last frame of a successful request.
///
/// Wire form: `{"id": ..., "op": "<op it answers>", ...result fields}`.
public struct Reply: Sendable, Equatable {
    /// The client-chosen id of the request this belongs to, echoed exactly.
    public var id: RequestID
    /// The op answered and its typed result.
    public var body: ReplyBody

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(id: RequestID, _ body: ReplyBody) {
        self.id = id
        self.body = body
    }

    /// The payload bytes: compact JSON, keys sorted (deterministic, so hexdumps are stable).
    public func payload() -> [UInt8] {
        var b = ObjectBuilder()
        b["id"] = id.json
        b["op"] = .string(body.op.rawValue)
        switch body {
        case .hello(let s), .info(let s):
            b["protocol_version"] = .int(Int64(s.protocolVersion))
            b["server_version"] = .string(s.serverVersion)
            b["model"] = .object(s.model)
            b["limits"] = .object(s.limits)
        case .complete(let g), .chat(let g):
            b["text"] = g.text.map { .string($0) }
            b["finish_reason"] = .string(g.finishReason.rawValue)
            b["message"] = g.message.map { .string($0) }
            b["usage"] = .object([
                "prompt_tokens": .int(Int64(g.usage.promptTokens)),
                "generated_tokens": .int(Int64(g.usage.generatedTokens)),
                "ttft_ms": .double(g.usage.ttftMS),
                "tokens_per_second": .double(g.usage.tokensPerSecond),
                "total_ms": .double(g.usage.totalMS),
            ])
        case .tokenize(let ids):
            b["ids"] = .array(ids.map { .int(Int64($0)) })
        case .detokenize(let text):
            b["text"] = .string(text)
        case .cancel(let cancelled):
            b["cancelled"] = .bool(cancelled)
        case .status(let object):
            b["status"] = .object(object)
        case .stats(let s):
            b["counters"] = .object(s.counters.mapValues { .int($0) })
            b["gauges"] = .object(s.gauges.mapValues { .double($0) })
            b["percentiles"] = .object(s.percentiles.mapValues { .object($0.mapValues { .double($0) }) })
        case .ping:
            break
        case .suggest(let x):
            b["suggestions"] = .array(x.suggestions.map {
                .object(["text": .string($0.text), "prob": .double($0.prob), "logprob": .double($0.logprob), "tokens": .int(Int64($0.tokens))])
            })
            b["healed"] = .bool(x.healed)
            b["prompt_tokens"] = .int(Int64(x.promptTokens))
            b["reused_tokens"] = .int(Int64(x.reusedTokens))
            b["ms"] = .double(x.ms)
        case .parse(let x):
            b["result"] = x.result
            b["text"] = .string(x.text)
            b["complete"] = .bool(x.complete)
            b["generated_tokens"] = .int(Int64(x.generatedTokens))
            b["ms"] = .double(x.ms)
            b["confidence"] = .object(x.confidence.mapValues { .double($0) })
            b["intent"] = x.intent.map { .string($0) }
            b["tokens"] = x.tokens.map { .array($0.map { .int(Int64($0)) }) }
            b["matched"] = .bool(x.matched)
            b["match_score"] = x.matchScore.map { .double($0) }
            b["violations"] = .array(x.violations.map {
                .object(["field": .string($0.field), "wanted": $0.wanted, "reason": .string($0.reason)])
            })
            b["needs_confirmation"] = .array(x.needsConfirmation.map { .string($0) })
        case .intents(let list):
            b["intents"] = .array(list.map { i in
                var o: JSONObject = ["name": .string(i.name), "schema": .string(i.schema)]
                if let d = i.description { o["description"] = .string(d) }
                return .object(o)
            })
        case .choose(let x):
            b["best"] = .string(x.best)
            b["best_index"] = .int(Int64(x.bestIndex))
            b["options"] = .array(x.options.map {
                .object(["text": .string($0.text), "logprob": .double($0.logprob),
                         "normalized_logprob": .double($0.normalizedLogprob), "tokens": .int(Int64($0.tokens))])
            })
            b["ms"] = .double(x.ms)
        }
        return b.payload
    }

    /// This message as a frame of its type, ready for `encode()`.
    public func frame() -> Frame { Frame(type: .reply, payload: payload()) }

    /// Decodes a reply payload (client side). Same error codes as `Request(payload:)`.
    public init(payload: some Collection<UInt8>) throws(ProtocolError) {
        let top = try FieldReader.payload(payload)
        let id = try RequestID.read(top.value("id") ?? .null, path: "id")
        let r = FieldReader(top.members, requestID: id)
        let opName = try r.required("op", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
        guard let op = Op(rawValue: opName) else {
            throw ProtocolError(.unknownType, "unknown op '\(opName)' in reply", requestID: id)
        }
        self.id = id
        self.body = try Self.readBody(op, r)
    }

    private static func readConfidence(_ r: FieldReader) throws(ProtocolError) -> [String: Double] {
        var out: [String: Double] = [:]
        for (k, v) in try r.object("confidence") ?? [:] {
            switch v {
            case .int(let i) where (0...1).contains(i): out[k] = Double(i)
            case .double(let d) where (0...1).contains(d): out[k] = d
            default: throw .badField("confidence.\(k)", "expected a probability in [0, 1]", requestID: r.requestID)
            }
        }
        return out
    }

    private static func readBody(_ op: Op, _ r: FieldReader) throws(ProtocolError) -> ReplyBody {
        let anyInt = Int64.min...Int64.max
        func info() throws(ProtocolError) -> ServerInfo {
            ServerInfo(
                protocolVersion: Int(try r.required("protocol_version", "expected an integer") {
                    (k) throws(ProtocolError) in try r.int(k, in: 0...255) }),
                serverVersion: try r.required("server_version", "expected a string") {
                    (k) throws(ProtocolError) in try r.string(k) },
                model: try r.object("model") ?? [:],
                limits: try r.object("limits") ?? [:])
        }
        func generation() throws(ProtocolError) -> GenerationResult {
            let reason = try r.required("finish_reason", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
            let usageObject = try r.required("usage", "expected an object") { (k) throws(ProtocolError) in try r.object(k) }
            let u = FieldReader(usageObject, path: "usage", requestID: r.requestID)
            func count(_ k: String) throws(ProtocolError) -> Int {
                Int(try u.required(k, "expected an integer") { (k) throws(ProtocolError) in try u.int(k, in: 0...Int64.max) })
            }
            func ms(_ k: String) throws(ProtocolError) -> Double {
                try u.required(k, "expected a number") { (k) throws(ProtocolError) in
                    try u.number(k, in: -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude) }
            }
            let usage = Usage(promptTokens: try count("prompt_tokens"), generatedTokens: try count("generated_tokens"),
                              ttftMS: try ms("ttft_ms"), tokensPerSecond: try ms("tokens_per_second"),
                              totalMS: try ms("total_ms"))
            return GenerationResult(text: try r.string("text"), finishReason: FinishReason(rawValue: reason),
                                    usage: usage, message: try r.string("message"))
        }
        switch op {
        case .hello: return .hello(try info())
        case .info: return .info(try info())
        case .complete: return .complete(try generation())
        case .chat: return .chat(try generation())
        case .tokenize:
            let items = try r.required("ids", "expected an array of integers") { (k) throws(ProtocolError) in try r.array(k) }
            var ids: [Int] = []
            for (n, item) in items.enumerated() {
                ids.append(Int(try FieldReader.int(item, in: anyInt, path: "ids[\(n)]", requestID: r.requestID)))
            }
            return .tokenize(ids: ids)
        case .detokenize:
            return .detokenize(text: try r.required("text", "expected a string") { (k) throws(ProtocolError) in try r.string(k) })
        case .cancel:
            return .cancel(cancelled: try r.required("cancelled", "expected a boolean") { (k) throws(ProtocolError) in try r.bool(k) })
        case .status:
            return .status(try r.object("status") ?? [:])
        case .stats:
            var s = Stats()
            for (name, value) in try r.object("counters") ?? [:] {
                s.counters[name] = try FieldReader.int(value, in: anyInt, path: "counters.\(name)", requestID: r.requestID)
            }
            let g = FieldReader(try r.object("gauges") ?? [:], path: "gauges", requestID: r.requestID)
            for name in g.members.keys { s.gauges[name] = try g.number(name, in: -.greatestFiniteMagnitude ... .greatestFiniteMagnitude) }
            for (name, value) in try r.object("percentiles") ?? [:] {
                let p = try r.nested(value, path: "percentiles.\(name)")
                var row: [String: Double] = [:]
                for q in p.members.keys { row[q] = try p.number(q, in: -.greatestFiniteMagnitude ... .greatestFiniteMagnitude) }
                s.percentiles[name] = row
            }
            return .stats(s)
        case .ping:
            return .ping
        case .intents:
            let items = try r.required("intents", "expected an array") { (k) throws(ProtocolError) in try r.array(k) }
            var list: [IntentInfo] = []
            for (n, item) in items.enumerated() {
                let i = try r.nested(item, path: "intents[\(n)]")
                list.append(IntentInfo(
                    name: try i.required("name", "expected a string") { (k) throws(ProtocolError) in try i.string(k) },
                    description: try i.string("description"),
                    schema: try i.required("schema", "expected a string") { (k) throws(ProtocolError) in try i.string(k) }))
            }
            return .intents(list)
        case .suggest:
            let items = try r.required("suggestions", "expected an array") { (k) throws(ProtocolError) in try r.array(k) }
            var out: [SuggestResult.Suggestion] = []
            for (n, item) in items.enumerated() {
                let o = try r.nested(item, path: "suggestions[\(n)]")
                out.append(.init(text: try o.string("text") ?? "",
                                 prob: try o.number("prob", in: 0...1) ?? 0,
                                 logprob: try o.number("logprob", in: -.greatestFiniteMagnitude...0) ?? 0,
                                 tokens: Int(try o.int("tokens", in: 0...Int64(Int32.max)) ?? 0)))
            }
            return .suggest(SuggestResult(suggestions: out, healed: try r.bool("healed") ?? false,
                                          promptTokens: Int(try r.int("prompt_tokens", in: 0...anyInt.upperBound) ?? 0),
                                          reusedTokens: Int(try r.int("reused_tokens", in: 0...anyInt.upperBound) ?? 0),
                                          ms: try r.number("ms", in: 0...Double.greatestFiniteMagnitude) ?? 0))
        case .parse:
            var violations: [ParseResult.Violation] = []
            for (n, item) in (try r.array("violations") ?? []).enumerated() {
                let o = try r.nested(item, path: "violations[\(n)]")
                violations.append(.init(field: try o.string("field") ?? "", wanted: o.value("wanted") ?? .null, reason: try o.string("reason") ?? ""))
            }
            var confirm: [String] = []
            for (n, item) in (try r.array("needs_confirmation") ?? []).enumerated() {
                guard case .string(let f) = item else { throw .badField("needs_confirmation[\(n)]", "expected a string", requestID: r.requestID) }
                confirm.append(f)
            }
            let complete = try r.bool("complete") ?? false
            return .parse(ParseResult(result: r.value("result") ?? .null, text: try r.string("text") ?? "",
                                      complete: complete,
                                      generatedTokens: Int(try r.int("generated_tokens", in: 0...anyInt.upperBound) ?? 0),
                                      ms: try r.number("ms", in: 0...Double.greatestFiniteMagnitude) ?? 0,
                                      confidence: try Self.readConfidence(r), intent: try r.string("intent"),
                                      tokens: try r.array("tokens").map { (items) throws(ProtocolError) in
                                          var ids: [Int] = []
                                          for (n, v) in items.enumerated() {
                                              guard case .int(let i) = v else { throw .badField("tokens[\(n)]", "expected an integer", requestID: r.requestID) }
                                              ids.append(Int(i))
                                          }
                                          return ids
                                      },
                                      matched: try r.bool("matched") ?? complete,
                                      matchScore: try r.number("match_score", in: 0...1),
                                      violations: violations, needsConfirmation: confirm))
        case .choose:
            let items = try r.required("options", "expected an array") { (k) throws(ProtocolError) in try r.array(k) }
            var out: [ChooseResult.Option] = []
            for (n, item) in items.enumerated() {
                let o = try r.nested(item, path: "options[\(n)]")
                out.append(.init(text: try o.string("text") ?? "",
                                 logprob: try o.number("logprob", in: -.greatestFiniteMagnitude...0) ?? 0,
                                 normalizedLogprob: try o.number("normalized_logprob", in: -.greatestFiniteMagnitude...0) ?? 0,
                                 tokens: Int(try o.int("tokens", in: 0...Int64(Int32.max)) ?? 0)))
            }
            return .choose(ChooseResult(best: try r.string("best") ?? "", bestIndex: Int(try r.int("best_index", in: 0...1024) ?? 0),
                                        options: out, ms: try r.number("ms", in: 0...Double.greatestFiniteMagnitude) ?? 0))
        }
    }
}
