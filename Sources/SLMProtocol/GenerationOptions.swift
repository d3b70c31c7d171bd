/// Sampling and control options shared by `complete` and `chat`.
///
/// Every option is optional: nil means "use the server's default". The ranges checked
/// here are protocol-level sanity bounds (reject negative or absurd values without
/// knowing the server); the server's configured caps (e.g. its `max_tokens` limit, which
/// `hello` reports) are checked by the server on the parsed values.
public struct GenerationOptions: Sendable, Equatable {
    /// Most tokens to generate. Range 1...`Bounds.maxTokens`.
    public var maxTokens: Int?
    /// Softmax temperature; 0 means greedy. Range 0...100.
    public var temperature: Double?
    /// Keep only the k most likely tokens; 0 disables. Range 0...`Bounds.topK`.
    public var topK: Int?
    /// Nucleus sampling mass; 1 disables. Range 0...1.
    public var topP: Double?
    /// Drop tokens below `min_p` × the top probability; 0 disables. Range 0...1.
    public var minP: Double?
    /// Penalty for recently generated tokens; 1 disables. Range 0...100.
    public var repeatPenalty: Double?
    /// How many recent tokens the repeat penalty looks at; 0 disables. Range 0...`Bounds.repeatWindow`.
    public var repeatWindow: Int?
    /// RNG seed for reproducible sampling. Range 0...2^53-1 (exact in every JSON client).
    public var seed: UInt64?
    /// Generation stops before any of these strings; at most `Bounds.stopCount` entries,
    /// each 1...`Bounds.stopBytes` UTF-8 bytes. Empty means none.
    public var stop: [String]
    /// Wall-clock budget in milliseconds from receipt; finish reason `deadline` when hit.
    /// Range 1...`Bounds.deadlineMS`.
    public var deadlineMS: Int?
    /// Whether to send `token` events before the final reply (default true).
    public var stream: Bool
    /// Session key (v1 addition): a new request on the same session supersedes the
    /// previous one, which ends with `superseded`, and reuses its KV prefix.
    public var session: String?
    /// JSON Schema as JSON text (v1 addition): the output is constrained to one JSON value
    /// valid under it (compact, in the schema's key order). Generation then runs as one
    /// job: a streamed request gets the whole text in a single `token` event.
    public var schema: String?

    /// Memberwise initialiser; defaults match the wire defaults.
    public init(maxTokens: Int? = nil, temperature: Double? = nil, topK: Int? = nil, topP: Double? = nil,
                minP: Double? = nil, repeatPenalty: Double? = nil, repeatWindow: Int? = nil,
                seed: UInt64? = nil, stop: [String] = [], deadlineMS: Int? = nil, stream: Bool = true) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatWindow = repeatWindow
        self.seed = seed
        self.stop = stop
        self.deadlineMS = deadlineMS
        self.stream = stream
        self.session = nil
        self.schema = nil
    }

    /// Protocol-level bounds (documented in docs/PROTOCOL.md, "Generation options").
    public enum Bounds {
        /// Upper bound of `max_tokens`.
        public static let maxTokens: Int64 = 1 << 20
        /// Range of `temperature`.
        public static let temperature: ClosedRange<Double> = 0...100
        /// Upper bound of `top_k`.
        public static let topK: Int64 = 1 << 20
        /// Range of `repeat_penalty`, lower bound excluded: (0, 10]. The sampler divides by it.
        public static let repeatPenalty: ClosedRange<Double> = 0...10
        /// Range of `top_p`, lower bound excluded: (0, 1]. 0 would keep no token.
        public static let topP: ClosedRange<Double> = 0...1
        /// Range of `min_p`: [0, 1].
        public static let minP: ClosedRange<Double> = 0...1
        /// Upper bound of `repeat_window`.
        public static let repeatWindow: Int64 = 1 << 16
        /// Upper bound of `seed`: 2^53-1, exact as a JSON number in every client.
        public static let seed: Int64 = (1 << 53) - 1
        /// Most `stop` strings.
        public static let stopCount = 8
        /// Longest `stop` string in UTF-8 bytes.
        public static let stopBytes = 64
        /// One day: longer deadlines are almost certainly unit mistakes.
        public static let deadlineMS: Int64 = 86_400_000
        /// Longest session key, in bytes.
        public static let sessionBytes = 128
    }

    static func read(_ r: FieldReader) throws(ProtocolError) -> GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = try r.int("max_tokens", in: 1...Bounds.maxTokens).map(Int.init)
        o.temperature = try r.number("temperature", in: Bounds.temperature)
        o.topK = try r.int("top_k", in: 0...Bounds.topK).map(Int.init)
        o.topP = try r.number("top_p", in: Bounds.topP, excludingLowerBound: true)
        o.minP = try r.number("min_p", in: Bounds.minP)
        o.repeatPenalty = try r.number("repeat_penalty", in: Bounds.repeatPenalty, excludingLowerBound: true)
        o.repeatWindow = try r.int("repeat_window", in: 0...Bounds.repeatWindow).map(Int.init)
        o.seed = try r.int("seed", in: 0...Bounds.seed).map(UInt64.init)
        if let items = try r.array("stop") {
            guard items.count <= Bounds.stopCount else {
                throw .badField(r.path("stop"), "expected at most \(Bounds.stopCount) strings, got \(items.count)",
                                requestID: r.requestID)
            }
            for (n, item) in items.enumerated() {
                let expectation = "expected a string of 1...\(Bounds.stopBytes) bytes"
                guard case .string(let s) = item else {
                    throw .badField(r.path("stop[\(n)]"), "\(expectation), got \(item.typeName)", requestID: r.requestID)
                }
                guard !s.isEmpty, s.utf8.count <= Bounds.stopBytes else {
                    throw .badField(r.path("stop[\(n)]"), "\(expectation), got \(s.utf8.count) bytes", requestID: r.requestID)
                }
                o.stop.append(s)
            }
        }
        o.deadlineMS = try r.int("deadline_ms", in: 1...Bounds.deadlineMS).map(Int.init)
        o.stream = try r.bool("stream") ?? true
        o.session = try r.string("session", maxBytes: Bounds.sessionBytes)
        o.schema = try r.string("schema")
        return o
    }

    func write(to b: inout ObjectBuilder) {
        b["max_tokens"] = maxTokens.map { .int(Int64($0)) }
        b["temperature"] = temperature.map { .double($0) }
        b["top_k"] = topK.map { .int(Int64($0)) }
        b["top_p"] = topP.map { .double($0) }
        b["min_p"] = minP.map { .double($0) }
        b["repeat_penalty"] = repeatPenalty.map { .double($0) }
        b["repeat_window"] = repeatWindow.map { .int(Int64($0)) }
        b["seed"] = seed.map { .int(Int64(clamping: $0)) }  // out of range → server says bad_field
        if !stop.isEmpty { b["stop"] = .array(stop.map { .string($0) }) }
        b["deadline_ms"] = deadlineMS.map { .int(Int64($0)) }
        b["schema"] = schema.map { .string($0) }
        if !stream { b["stream"] = .bool(false) }
        b["session"] = session.map { .string($0) }
    }
}
