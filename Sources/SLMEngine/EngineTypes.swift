import SLMKernels
import SLMModel
import Synchronization

/// The scheduler's limits. Every queue and buffer that grows with requests is bounded by
/// one of these.
public struct EngineConfig: Sendable, Equatable {
    /// Compute threads, the engine thread included (the pool never exceeds this).
    public var threads: Int = 2
    /// Sequences decoding at once (one batched forward pass advances all of them).
    public var maxSequences: Int = 4
    /// Requests waiting for a slot; beyond this new requests get `busy`.
    public var maxQueued: Int = 16
    /// Bytes for KV caches plus the runner's scratch; admission never exceeds it.
    public var memoryBudgetBytes: Int = 256 << 20
    /// Most tokens (prompt + generated) in one sequence.
    public var maxContext: Int = 2048
    /// Most tokens one request may generate.
    public var maxTokens: Int = 512
    /// Deadline applied when a request has none (seconds); 0 disables.
    public var defaultDeadlineSeconds: Double = 120
    /// Prompt tokens processed per step across all prefilling sequences: bounds how long
    /// a new long prompt delays the decoders (fairness) while keeping prefill batched.
    public var prefillChunk: Int = 64
    /// Finished sequences whose KV is kept for reuse (memory comes from the budget and is
    /// given back first); 0 disables the prefix cache.
    public var prefixCacheEntries: Int = 32

    public init() {}

    /// Why this configuration cannot work, or nil.
    public func problem(modelConfig: ModelConfig) -> String? {
        if threads < 1 || threads > 256 { return "threads must be in 1...256" }
        if maxSequences < 1 || maxSequences > 256 { return "max_sequences must be in 1...256" }
        if maxQueued < 1 || maxQueued > 65536 { return "max_queued must be in 1...65536" }
        if maxContext < 16 { return "max_context must be at least 16" }
        // Positions past the trained context are out of the model's distribution (and a
        // typo like 1000000 would only show up as over_memory_budget for every request).
        if maxContext > modelConfig.trainedContextLength {
            return "max_context \(maxContext) is above the model's trained context length \(modelConfig.trainedContextLength)"
        }
        if maxTokens < 1 || maxTokens >= maxContext { return "max_tokens must be in 1..<max_context" }
        if prefillChunk < 1 || prefillChunk > 4096 { return "prefill_chunk must be in 1...4096" }
        if prefixCacheEntries < 0 || prefixCacheEntries > 4096 { return "prefix_cache_entries must be in 0...4096" }
        let scratch = Engine.scratchBytes(model: modelConfig, config: self)
        let oneSequence = KVCache.bytes(config: modelConfig, capacity: 16)
        if memoryBudgetBytes < scratch + oneSequence {
            return "memory_budget \(memoryBudgetBytes) bytes is below the scratch (\(scratch)) plus one small sequence (\(oneSequence))"
        }
        return nil
    }
}

/// A generation to run: an already tokenized prompt and how to continue it.
public struct GenerationRequest: Sendable {
    public var promptIDs: [Int32]
    public var options: GenerationOptions
    /// Absolute monotonic time (see `monotonicSeconds()`) after which the request ends
    /// with `deadline`; nil uses the engine's default.
    public var deadline: Double?
    /// Emit text deltas as they are produced.
    public var stream: Bool
    /// A client's session key: a new request on the same session supersedes the previous
    /// one (it ends with `superseded`) and reuses its KV prefix.
    public var session: String?

    /// See `RequestHandle.owner`.
    public var owner: UInt32

    public init(promptIDs: [Int32], options: GenerationOptions, deadline: Double? = nil, stream: Bool = true,
                session: String? = nil, owner: UInt32 = 0) {
        self.owner = owner
        self.promptIDs = promptIDs
        self.options = options
        self.deadline = deadline
        self.stream = stream
        self.session = session
    }
}

/// How a request ended.
public struct Completion: Sendable, Equatable {
    public var finishReason: FinishReason
    /// All generated text (without an end-of-generation token's text).
    public var text: String
    public var generatedIDs: [Int32]
    public var promptTokens: Int
    public var generatedTokens: Int { generatedIDs.count }
    /// Submit to first token, milliseconds (0 when none was produced).
    public var ttftMs: Double
    /// Generated tokens after the first, per second of decoding.
    public var tokensPerSecond: Double
    public var totalMs: Double
    /// Set when `finishReason == .error`.
    public var errorMessage: String?
}

/// What the engine tells a request's owner, on the engine thread. The sink must not block.
public enum EngineEvent: Sendable {
    /// New text (whole UTF-8 characters) and how many tokens it spans.
    case text(String, tokens: Int)
    /// The last event for a request: always delivered exactly once.
    case finished(Completion)
}

/// Why a request was refused at submission.
public struct EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case busy, overMemoryBudget, contextOverflow, shuttingDown, badRequest
    }
    public let code: Code
    public let description: String
    public init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// Identifies a submitted request; cancel through the engine.
public final class RequestHandle: Sendable, Hashable {
    public let id: UInt64
    /// Whose request this is (the peer's uid over the socket; 0 in-process). Cached KV,
    /// replayable suggest steps and their reuse counts are shared only between requests
    /// of the same owner, so one user cannot probe what another typed.
    public let owner: UInt32
    let cancelRequested = Atomic<Bool>(false)
    /// Set with `cancelRequested` when a newer request on the same session replaced it.
    let superseded = Atomic<Bool>(false)
    init(id: UInt64, owner: UInt32) {
        self.id = id
        self.owner = owner
    }
    public static func == (a: RequestHandle, b: RequestHandle) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(id) }
}

/// A snapshot of the scheduler, for `stats`/`status` and the systemd STATUS line.
public struct EngineStats: Sendable, Equatable {
    public var active = 0
    public var queued = 0
    public var admitted = 0
    /// Finished requests by finish reason.
    public var finished: [FinishReason: Int] = [:]
    /// Refused at submission, by error code.
    public var refused: [EngineError.Code: Int] = [:]
    public var promptTokens = 0
    public var generatedTokens = 0
    public var forwardPasses = 0
    public var kvBytesInUse = 0
    public var kvBytesPeak = 0
    /// KV kept for reuse by later requests (evicted first when memory is needed): the
    /// prefix cache and idle suggest branch caches.
    public var prefixCacheBytes = 0
    public var prefixCacheEntries = 0
    public var prefixCacheHits = 0
    public var prefixCacheMisses = 0
    public var prefixCacheReusedTokens = 0
    public var suggestRequests = 0
    public var chooseRequests = 0
    public var parseRequests = 0
    public var memoryBudgetBytes = 0
    public var scratchBytes = 0
    /// Percentiles (p50, p90, p99) over recent requests.
    public var ttftMs: Percentiles = .init()
    public var tokensPerSecond: Percentiles = .init()
    public var kernelPath = ""
    public var threads = 0
    public var uptimeSeconds: Double = 0
}

public struct Percentiles: Sendable, Equatable {
    public var p50: Double = 0
    public var p90: Double = 0
    public var p99: Double = 0
    public var count = 0

    public init() {}

    init(_ samples: [Double]) {
        count = samples.count
        guard !samples.isEmpty else { return }
        let s = samples.sorted()
        func at(_ q: Double) -> Double { s[min(s.count - 1, Int((Double(s.count - 1) * q).rounded()))] }
        p50 = at(0.5); p90 = at(0.9); p99 = at(0.99)
    }
}

/// A fixed-size ring of recent samples: percentiles without unbounded growth.
struct SampleRing {
    private var values: [Double]
    private var next = 0
    private var filled = 0
    init(capacity: Int) { values = Array(repeating: 0, count: capacity) }
    mutating func add(_ v: Double) {
        values[next] = v
        next = (next + 1) % values.count
        filled = min(filled + 1, values.count)
    }
    var samples: [Double] { Array(values.prefix(filled)) }
}
