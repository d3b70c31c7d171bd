import SLMLimits

/// The operation a request asks for: the `op` member of a request payload.
///
/// An `op` this build does not know is answered with `unknown_type` (never a dropped
/// connection), so later ops (`parse`, `suggest`, `choose`, ...) are pure additions.
public enum Op: String, Sendable, CaseIterable {
    // v1 additions (2026-11-26): suggest, choose.
    case hello, info, complete, chat, tokenize, detokenize, cancel, status, stats, ping
    case suggest, choose, parse
    // v1 addition (2026-11-28): intents.
    case intents
}

/// `hello`: version negotiation and server description.
public struct HelloRequest: Sendable, Equatable {
    /// Free-form client name for logs (at most 128 bytes).
    public var client: String?
    /// Highest protocol version the client speaks (1...255); nil means 1.
    public var maxVersion: Int?
    /// Memberwise initialiser; defaults match the wire defaults.
    public init(client: String? = nil, maxVersion: Int? = nil) {
        self.client = client
        self.maxVersion = maxVersion
    }

    /// The version to speak on this connection: the lower of the client's `max_version`
    /// (1 when absent) and this build's. Never below 1, since `max_version` is at least 1.
    public var negotiatedVersion: Int { min(maxVersion ?? 1, Int(SLMProtocolVersion.current)) }
}

/// `complete`: continue a raw prompt.
public struct CompleteRequest: Sendable, Equatable {
    /// Raw prompt text, tokenized as is.
    public var prompt: String
    /// Whether special-token text in the prompt (e.g. `<|im_start|>`) is parsed as special
    /// tokens. Default false: a raw prompt is plain text unless the client asks, so user
    /// text cannot inject control tokens by accident.
    public var parseSpecial: Bool
    /// Sampling and control options.
    public var options: GenerationOptions
    /// Memberwise initialiser; defaults match the wire defaults.
    public init(prompt: String, parseSpecial: Bool = false, options: GenerationOptions = GenerationOptions()) {
        self.prompt = prompt
        self.parseSpecial = parseSpecial
        self.options = options
    }
}

/// `chat`: messages rendered with the model's chat template, then generation.
public struct ChatRequest: Sendable, Equatable {
    /// One chat turn.
    public struct Message: Sendable, Equatable {
        /// Who speaks; the template decides how each role is rendered.
        public enum Role: String, Sendable, CaseIterable { case system, user, assistant }
        /// Who speaks.
        public var role: Role
        /// What is said.
        public var content: String
        /// Memberwise initialiser; defaults match the wire defaults.
        public init(role: Role, content: String) {
            self.role = role
            self.content = content
        }
    }
    /// At least one message.
    public var messages: [Message]
    /// Sampling and control options.
    public var options: GenerationOptions
    /// Memberwise initialiser; defaults match the wire defaults.
    public init(messages: [Message], options: GenerationOptions = GenerationOptions()) {
        self.messages = messages
        self.options = options
    }
}

/// `tokenize`: text to token ids with the model's tokenizer.
public struct TokenizeRequest: Sendable, Equatable {
    /// The text to tokenize.
    public var text: String
    /// As for `complete`: special-token text is plain text unless true.
    public var parseSpecial: Bool
    /// Memberwise initialiser; defaults match the wire defaults.
    public init(text: String, parseSpecial: Bool = false) {
        self.text = text
        self.parseSpecial = parseSpecial
    }
}

/// `detokenize`: token ids to text.
public struct DetokenizeRequest: Sendable, Equatable {
    /// Token ids, each in 0...2^31-1; the server checks them against its vocabulary
    /// (`bad_field` if out of range).
    public var ids: [Int]
    /// Memberwise initialiser; defaults match the wire defaults.
    public init(ids: [Int]) { self.ids = ids }
}

/// `cancel`: stop another in-flight request of the same connection.
public struct CancelRequest: Sendable, Equatable {
    /// The id of the request to cancel.
    public var target: RequestID
    /// Memberwise initialiser; defaults match the wire defaults.
    public init(target: RequestID) { self.target = target }
}

/// The typed body of a request, one case per `Op`.
/// `suggest`: short continuations of what a person has typed so far.
public struct SuggestRequest: Sendable, Equatable {
    /// What a suggestion is: a short phrase (the default) or the one word being typed.
    public enum Mode: String, Sendable, CaseIterable {
        case phrase, word
    }
    /// Text before the cursor (may be empty: the start of a field).
    public var prefix: String
    /// Suggestions wanted (`Limits.suggestN`).
    public var n: Int
    /// Most tokens per suggestion (`Limits.suggestMaxTokens`).
    public var maxTokens: Int
    /// Most words per suggestion (0: no limit). Phrase mode.
    public var maxWords: Int
    /// End a suggestion after . ! or ? Phrase mode.
    public var stopAtSentence: Bool
    public var mode: Mode
    /// Suggestions less probable than this (given the typed text) are not searched for
    /// (0...1; nil: the server's default).
    public var minProb: Double?
    /// Text before the field that was not typed in it (a label, earlier fields): the model
    /// reads it, the suggestions continue `prefix`.
    public var context: String?
    /// A UI session: a newer suggest on it supersedes this one and reuses its prefix.
    public var session: String?
    public var deadlineMS: Int?
    public init(prefix: String, n: Int = Int(Limits.suggestN.defaultValue!),
                maxTokens: Int = Int(Limits.suggestMaxTokens.defaultValue!),
                maxWords: Int = Int(Limits.suggestMaxWords.defaultValue!), stopAtSentence: Bool = true,
                mode: Mode = .phrase, minProb: Double? = nil, context: String? = nil,
                session: String? = nil, deadlineMS: Int? = nil) {
        self.prefix = prefix; self.n = n; self.maxTokens = maxTokens; self.maxWords = maxWords
        self.stopAtSentence = stopAtSentence; self.mode = mode; self.minProb = minProb; self.context = context
        self.session = session; self.deadlineMS = deadlineMS
    }
}

/// `choose`: which of a few options the model finds most likely after a prompt.
public struct ChooseRequest: Sendable, Equatable {
    public var prompt: String
    /// `Limits.chooseOptions` options, each scored as a continuation of the prompt.
    public var options: [String]
    /// Rank by log-probability per token instead of the total.
    public var normalize: Bool
    public var parseSpecial: Bool
    public init(prompt: String, options: [String], normalize: Bool = false, parseSpecial: Bool = false) {
        self.prompt = prompt; self.options = options; self.normalize = normalize; self.parseSpecial = parseSpecial
    }
}

/// `parse`: turn an utterance into JSON that is valid under a schema (constrained decoding).
/// Names an intent the daemon loaded from its intents directory, or carries the schema
/// (and optionally instruction and examples) inline; exactly one of the two.
public struct ParseRequest: Sendable, Equatable {
    public var utterance: String
    /// A configured intent (its schema, instruction and examples are used).
    public var intent: String?
    /// The JSON Schema as JSON *text*: property order is the output's key order, and a JSON
    /// object on the wire would not keep it.
    public var schema: String?
    /// What to do, for the model (default: the intent's, or a generic one).
    public var instruction: String?
    /// Worked examples: utterance and the expected object.
    public var examples: [Example]
    public var maxTokens: Int?
    public var temperature: Double?
    public var deadlineMS: Int?
    /// Return the generated token ids too.
    public var returnTokens: Bool
    /// The operating point: least `match_score` a reply may have to be `matched` (default:
    /// the intent's, else the server's).
    public var minMatchScore: Double?
    /// Fields whose confidence is below this are listed in `needs_confirmation`.
    public var confirmBelow: Double?
    /// Extra spellings of enum values: `{"field": {"value": ["spelling", ...]}}` (default:
    /// the intent's).
    public var synonyms: JSONValue?

    public struct Example: Sendable, Equatable {
        public var utterance: String
        public var output: JSONValue
        public init(utterance: String, output: JSONValue) { self.utterance = utterance; self.output = output }
    }

    public init(utterance: String, intent: String? = nil, schema: String? = nil, instruction: String? = nil,
                examples: [Example] = [], maxTokens: Int? = nil, temperature: Double? = nil, deadlineMS: Int? = nil,
                returnTokens: Bool = false, minMatchScore: Double? = nil, confirmBelow: Double? = nil, synonyms: JSONValue? = nil) {
        self.utterance = utterance; self.intent = intent; self.schema = schema; self.instruction = instruction
        self.examples = examples; self.maxTokens = maxTokens; self.temperature = temperature
        self.deadlineMS = deadlineMS; self.returnTokens = returnTokens
        self.minMatchScore = minMatchScore; self.confirmBelow = confirmBelow; self.synonyms = synonyms
    }
}

public enum RequestBody: Sendable, Equatable {
    case suggest(SuggestRequest)
    case choose(ChooseRequest)
    case parse(ParseRequest)
    case hello(HelloRequest)
    case info
    case complete(CompleteRequest)
    case chat(ChatRequest)
    case tokenize(TokenizeRequest)
    case detokenize(DetokenizeRequest)
    case cancel(CancelRequest)
    case status
    case stats
    case ping
    /// The loaded intents (no members).
    case intents

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

/// A client request: the payload of a frame of type `request`.
///
/// Wire form: `{"id": <string|int>, "op": "<op>", ...op fields}`. Fields an op does not
/// define are ignored (forward compatibility).
public struct Request: Sendable, Equatable {
    /// The client-chosen id of the request this belongs to, echoed exactly.
    public var id: RequestID
    /// The op and its typed members.
    public var body: RequestBody

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(id: RequestID, _ body: RequestBody) {
        self.id = id
        self.body = body
    }

    /// Longest accepted `hello.client`, in bytes.
    public static let maxClientNameBytes = Int(Limits.clientBytes.upperBound)

    /// Decodes a request frame. A frame of another type is `unknown_type` (a server only
    /// accepts requests), otherwise as `init(payload:)`.
    public init(frame: Frame) throws(ProtocolError) {
        guard frame.type == .request else {
            throw ProtocolError(.unknownType, "expected a request frame (type 1), got \(frame.type)")
        }
        try self.init(payload: frame.payload)
    }

    /// Decodes and validates a request payload. Errors carry a stable code and, once the
    /// `id` has been read, that id, so the server can answer on the right request:
    /// - `bad_utf8`: not UTF-8 (checked before JSON parsing);
    /// - `bad_json`: not JSON, or not an object;
    /// - `bad_field`: `id` or `op` missing/mistyped, or an op field wrong (named in the message);
    /// - `unknown_type`: an `op` this build does not know.
    /// All are per-request: the framing is intact, so the connection stays usable.
    public init(payload: some Collection<UInt8>) throws(ProtocolError) {
        let top = try FieldReader.payload(payload)
        guard let idValue = top.value("id") else {
            throw ProtocolError.badField("id", "expected a string or an integer (missing)")
        }
        let id = try RequestID.read(idValue, path: "id")
        let r = FieldReader(top.members, requestID: id)
        let opName = try r.required("op", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
        guard let op = Op(rawValue: opName) else {
            throw ProtocolError(.unknownType, "unknown op '\(opName)'", requestID: id)
        }
        self.id = id
        self.body = try Self.readBody(op, r)
    }

    private static func readBody(_ op: Op, _ r: FieldReader) throws(ProtocolError) -> RequestBody {
        switch op {
        case .parse:
            let utterance = try r.required("utterance", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
            let intent = try r.string(Limits.intentBytes)
            let schema = try r.string("schema")
            guard (intent == nil) != (schema == nil) else {
                throw intent == nil ? .badField("intent", "expected an intent name, or a 'schema' (both missing)", requestID: r.requestID)
                                    : .badField("schema", "not allowed together with 'intent'", requestID: r.requestID)
            }
            var examples: [ParseRequest.Example] = []
            for (n, item) in (try r.array("examples") ?? []).enumerated() {
                guard Limits.parseExamples.contains(Int64(n + 1)) else {
                    throw .badField("examples", "expected at most \(Limits.parseExamples.upperBound) examples", requestID: r.requestID)
                }
                guard case .array(let pair) = item, pair.count == 2, case .string(let u) = pair[0] else {
                    throw .badField("examples[\(n)]", "expected [utterance, object]", requestID: r.requestID)
                }
                examples.append(.init(utterance: u, output: pair[1]))
            }
            return .parse(ParseRequest(utterance: utterance, intent: intent, schema: schema, instruction: try r.string("instruction"),
                                       examples: examples, maxTokens: try r.int(Limits.parseMaxTokens).map(Int.init),
                                       temperature: try r.number(Limits.temperature),
                                       deadlineMS: try r.int(Limits.deadlineMS).map(Int.init),
                                       returnTokens: try r.bool("tokens") ?? false,
                                       minMatchScore: try r.number(Limits.minMatchScore),
                                       confirmBelow: try r.number(Limits.confirmBelow),
                                       synonyms: try r.object("synonyms").map { JSONValue.object($0) }))
        case .suggest:
            let prefix = try r.required("prefix", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
            var mode = SuggestRequest.Mode.phrase
            if let name = try r.string("mode") {
                guard let m = SuggestRequest.Mode(rawValue: name) else {
                    throw .badField("mode", "expected \"phrase\" or \"word\", got \"\(name)\"", requestID: r.requestID)
                }
                mode = m
            }
            return .suggest(SuggestRequest(
                prefix: prefix, n: Int(try r.int(Limits.suggestN) ?? Limits.suggestN.defaultValue!),
                maxTokens: Int(try r.int(Limits.suggestMaxTokens) ?? Limits.suggestMaxTokens.defaultValue!),
                maxWords: Int(try r.int(Limits.suggestMaxWords) ?? Limits.suggestMaxWords.defaultValue!),
                stopAtSentence: try r.bool("stop_at_sentence") ?? true,
                mode: mode, minProb: try r.number(Limits.suggestMinProb), context: try r.string("context"),
                session: try r.string(Limits.sessionBytes),
                deadlineMS: try r.int(Limits.deadlineMS).map(Int.init)))
        case .choose:
            let prompt = try r.required("prompt", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
            let expectation = "expected an array of \(Limits.chooseOptions.lowerBound)...\(Limits.chooseOptions.upperBound) strings"
            let items = try r.required("options", expectation) { (k) throws(ProtocolError) in try r.array(k) }
            guard Limits.chooseOptions.contains(Int64(items.count)) else {
                throw .badField("options", "\(expectation), got \(items.count) entries", requestID: r.requestID)
            }
            var options: [String] = []
            for (n, item) in items.enumerated() {
                guard case .string(let s) = item, !s.isEmpty else {
                    throw .badField("options[\(n)]", "expected a non-empty string, got \(item.typeName)", requestID: r.requestID)
                }
                options.append(s)
            }
            return .choose(ChooseRequest(prompt: prompt, options: options, normalize: try r.bool("normalize") ?? false,
                                         parseSpecial: try r.bool("parse_special") ?? false))
        case .hello:
            return .hello(HelloRequest(
                client: try r.string(Limits.clientBytes),
                maxVersion: try r.int(Limits.maxVersion).map(Int.init)))
        case .info: return .info
        case .status: return .status
        case .stats: return .stats
        case .ping: return .ping
        case .intents: return .intents
        case .complete:
            let prompt = try r.required("prompt", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
            return .complete(CompleteRequest(prompt: prompt, parseSpecial: try r.bool("parse_special") ?? false,
                                             options: try GenerationOptions.read(r)))
        case .chat:
            let items = try r.required("messages", "expected a non-empty array") { (k) throws(ProtocolError) in try r.array(k) }
            guard !items.isEmpty else {
                throw .badField("messages", "expected a non-empty array, got an empty one", requestID: r.requestID)
            }
            var messages: [ChatRequest.Message] = []
            for (n, item) in items.enumerated() {
                let m = try r.nested(item, path: "messages[\(n)]")
                let roleName = try m.required("role", "expected \"system\", \"user\" or \"assistant\"") {
                    (k) throws(ProtocolError) in try m.string(k)
                }
                guard let role = ChatRequest.Message.Role(rawValue: roleName) else {
                    throw .badField(m.path("role"), "expected \"system\", \"user\" or \"assistant\", got \"\(roleName)\"",
                                    requestID: r.requestID)
                }
                let content = try m.required("content", "expected a string") { (k) throws(ProtocolError) in try m.string(k) }
                messages.append(.init(role: role, content: content))
            }
            return .chat(ChatRequest(messages: messages, options: try GenerationOptions.read(r)))
        case .tokenize:
            let text = try r.required("text", "expected a string") { (k) throws(ProtocolError) in try r.string(k) }
            return .tokenize(TokenizeRequest(text: text, parseSpecial: try r.bool("parse_special") ?? false))
        case .detokenize:
            let items = try r.required("ids", "expected an array of integers") { (k) throws(ProtocolError) in try r.array(k) }
            var ids: [Int] = []
            ids.reserveCapacity(items.count)
            for (n, item) in items.enumerated() {
                ids.append(Int(try FieldReader.int(item, in: Limits.tokenID.range, path: "ids[\(n)]", requestID: r.requestID)))
            }
            return .detokenize(DetokenizeRequest(ids: ids))
        case .cancel:
            guard let target = r.value("target") else {
                throw .badField("target", "expected a string or an integer (missing)", requestID: r.requestID)
            }
            do {
                return .cancel(CancelRequest(target: try RequestID.read(target, path: "target")))
            } catch {
                var e = error
                e.requestID = r.requestID
                throw e
            }
        }
    }

    /// The payload bytes (compact JSON, keys sorted).
    public func payload() -> [UInt8] {
        var b = ObjectBuilder()
        b["id"] = id.json
        b["op"] = .string(body.op.rawValue)
        switch body {
        case .info, .status, .stats, .ping, .intents:
            break
        case .hello(let h):
            b["client"] = h.client.map { .string($0) }
            b["max_version"] = h.maxVersion.map { .int(Int64($0)) }
        case .complete(let c):
            b["prompt"] = .string(c.prompt)
            if c.parseSpecial { b["parse_special"] = true }
            c.options.write(to: &b)
        case .chat(let c):
            b["messages"] = .array(c.messages.map { .object(["role": .string($0.role.rawValue), "content": .string($0.content)]) })
            c.options.write(to: &b)
        case .tokenize(let t):
            b["text"] = .string(t.text)
            if t.parseSpecial { b["parse_special"] = true }
        case .detokenize(let d):
            b["ids"] = .array(d.ids.map { .int(Int64($0)) })
        case .cancel(let c):
            b["target"] = c.target.json
        case .suggest(let x):
            b["prefix"] = .string(x.prefix)
            b["n"] = .int(Int64(x.n))
            b["max_tokens"] = .int(Int64(x.maxTokens))
            b["max_words"] = .int(Int64(x.maxWords))
            if !x.stopAtSentence { b["stop_at_sentence"] = false }
            if x.mode != .phrase { b["mode"] = .string(x.mode.rawValue) }
            b["min_prob"] = x.minProb.map { .double($0) }
            b["context"] = x.context.map { .string($0) }
            b["session"] = x.session.map { .string($0) }
            b["deadline_ms"] = x.deadlineMS.map { .int(Int64($0)) }
        case .parse(let x):
            b["utterance"] = .string(x.utterance)
            b["intent"] = x.intent.map { .string($0) }
            b["schema"] = x.schema.map { .string($0) }
            if x.returnTokens { b["tokens"] = true }
            b["instruction"] = x.instruction.map { .string($0) }
            if !x.examples.isEmpty { b["examples"] = .array(x.examples.map { .array([.string($0.utterance), $0.output]) }) }
            b["max_tokens"] = x.maxTokens.map { .int(Int64($0)) }
            b["temperature"] = x.temperature.map { .double($0) }
            b["deadline_ms"] = x.deadlineMS.map { .int(Int64($0)) }
            b["min_match_score"] = x.minMatchScore.map { .double($0) }
            b["confirm_below"] = x.confirmBelow.map { .double($0) }
            b["synonyms"] = x.synonyms
        case .choose(let x):
            b["prompt"] = .string(x.prompt)
            b["options"] = .array(x.options.map { .string($0) })
            if x.normalize { b["normalize"] = true }
            if x.parseSpecial { b["parse_special"] = true }
        }
        return b.payload
    }

    /// The request as a frame, ready for `encode()`.
    public func frame() -> Frame { Frame(type: .request, payload: payload()) }
}
