import SLMLimits

/// Sampling and control options shared by `complete` and `chat`.
///
/// Every option is optional: nil means "use the server's default". The ranges checked
/// here are protocol-level sanity bounds (reject negative or absurd values without
/// knowing the server); the server's configured caps (e.g. its `max_tokens` limit, which
/// `hello` reports) are checked by the server on the parsed values.
public struct GenerationOptions: Sendable, Equatable {
    /// Most tokens to generate. Range `Limits.maxTokens`.
    public var maxTokens: Int?
    /// Softmax temperature; 0 means greedy. Range `Limits.temperature`.
    public var temperature: Double?
    /// Keep only the k most likely tokens; 0 disables. Range `Limits.topK`.
    public var topK: Int?
    /// Nucleus sampling mass; 1 disables. Range `Limits.topP` (0 excluded).
    public var topP: Double?
    /// Drop tokens below `min_p` × the top probability; 0 disables. Range `Limits.minP`.
    public var minP: Double?
    /// Penalty for recently generated tokens; 1 disables. Range `Limits.repeatPenalty` (0 excluded).
    public var repeatPenalty: Double?
    /// How many recent tokens the repeat penalty looks at; 0 disables. Range `Limits.repeatWindow`.
    public var repeatWindow: Int?
    /// RNG seed for reproducible sampling. Range `Limits.seed`: 0...2^53-1 (exact in every JSON client).
    public var seed: UInt64?
    /// Generation stops before any of these strings; at most `Limits.stopCount` entries,
    /// each of `Limits.stopBytes` UTF-8 bytes. Empty means none.
    public var stop: [String]
    /// Wall-clock budget in milliseconds from receipt; finish reason `deadline` when hit.
    /// Range `Limits.deadlineMS`.
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

    static func read(_ r: FieldReader) throws(ProtocolError) -> GenerationOptions {
        var o = GenerationOptions()
        o.maxTokens = try r.int(Limits.maxTokens).map(Int.init)
        o.temperature = try r.number(Limits.temperature)
        o.topK = try r.int(Limits.topK).map(Int.init)
        o.topP = try r.number(Limits.topP)
        o.minP = try r.number(Limits.minP)
        o.repeatPenalty = try r.number(Limits.repeatPenalty)
        o.repeatWindow = try r.int(Limits.repeatWindow).map(Int.init)
        o.seed = try r.int(Limits.seed).map(UInt64.init)
        if let items = try r.array("stop") {
            guard Limits.stopCount.contains(Int64(items.count)) else {
                throw .badField(r.path("stop"), "expected at most \(Limits.stopCount.upperBound) strings, got \(items.count)",
                                requestID: r.requestID)
            }
            for (n, item) in items.enumerated() {
                let expectation = "expected a string of \(Limits.stopBytes.lowerBound)...\(Limits.stopBytes.upperBound) bytes"
                guard case .string(let s) = item else {
                    throw .badField(r.path("stop[\(n)]"), "\(expectation), got \(item.typeName)", requestID: r.requestID)
                }
                guard Limits.stopBytes.contains(Int64(s.utf8.count)) else {
                    throw .badField(r.path("stop[\(n)]"), "\(expectation), got \(s.utf8.count) bytes", requestID: r.requestID)
                }
                o.stop.append(s)
            }
        }
        o.deadlineMS = try r.int(Limits.deadlineMS).map(Int.init)
        o.stream = try r.bool("stream") ?? true
        o.session = try r.string(Limits.sessionBytes)
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
