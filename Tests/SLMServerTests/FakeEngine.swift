import Foundation
import GGUF
import Logging
@testable import SLMEngine
@testable import SLMModel
import SLMConstraint
import SLMProtocol
@testable import SLMServer
import SLMTestSupport
@testable import SLMTokenizer
import Synchronization
import XCTest

/// An in-process engine for the server's request handling: it answers from a script, and
/// delivers nothing until the test says so (`deliver`), so the order of frames is the
/// test's, not a thread race's. Its tokenizer is real (a tiny vocabulary the test writes),
/// so the handler's tokenizing is exercised as it is with a model.
final class FakeEngine: EngineService, @unchecked Sendable {
    // @unchecked: every mutable member is behind `state`.

    /// What a submission gets.
    enum Script {
        /// A generation streams these texts (one token each), then ends with `finish`.
        case stream([String], finish: SLMModel.FinishReason)
        /// A job ends with this outcome.
        case outcome(JobOutcome)
        /// Refused at once, as the engine refuses (busy, shutting down...).
        case refuse(EngineError)
        /// Runs until cancelled; then ends with `cancelled` and nothing generated.
        case hang
    }

    /// One accepted submission.
    struct Submission {
        enum Kind {
            case generation(GenerationRequest, sink: @Sendable (EngineEvent) -> Void)
            case job(String, completion: @Sendable (JobOutcome) -> Void)
        }
        let handle: RequestHandle
        let kind: Kind
        let script: Script
        /// Suggest options, choose options or parse prompt, for the test to check.
        var suggest: SuggestOptions?
        var choose: [[Int32]]?
        var parsePrompt: [Int32]?
        var cancelled = false
        var delivered = false
    }

    struct State {
        var scripts: [Script] = []
        var submissions: [Submission] = []
        var cancels = 0
        var parsePromptError: ParsePromptError?
        var stats = EngineStats()
    }

    let modelFacts: ModelFacts
    let state = Mutex(State())
    private let nextID = Atomic<UInt64>(1)

    init(tokenizer: Tokenizer) {
        modelFacts = ModelFacts(
            tokenizer: tokenizer, chatTemplate: .failure(ChatTemplateError(.missing, "the fake has none")),
            name: "fake", filePath: "/somewhere/fake.gguf", vocabSize: tokenizer.vocabSize, embeddingLength: 8,
            layerCount: 1, trainedContextLength: 64, weightBytes: 0,
            summary: ModelSummary(architecture: .llama, parameterCount: 0, tensorTypeCounts: [:], tokenizer: "gpt2",
                                  preTokenizer: "smollm", chatTemplate: nil))
    }

    /// Queues what the next submissions get, in order.
    func script(_ s: Script...) { state.withLock { $0.scripts += s } }

    var submissions: [Submission] { state.withLock { $0.submissions } }

    private func accept(_ kind: Submission.Kind, owner: UInt32,
                        _ edit: (inout Submission) -> Void = { _ in }) throws(EngineError) -> RequestHandle {
        let script = state.withLock { $0.scripts.isEmpty ? Script.hang : $0.scripts.removeFirst() }
        if case .refuse(let e) = script { throw e }
        let handle = RequestHandle(id: nextID.add(1, ordering: .relaxed).oldValue, owner: owner)
        var s = Submission(handle: handle, kind: kind, script: script)
        edit(&s)
        state.withLock { $0.submissions.append(s) }
        return handle
    }

    func submit(_ request: GenerationRequest, sink: @escaping @Sendable (EngineEvent) -> Void) throws(EngineError) -> RequestHandle {
        try accept(.generation(request, sink: sink), owner: request.owner)
    }

    func submitSuggest(prefix: String, options: SuggestOptions, owner: UInt32,
                       completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        try accept(.job("suggest", completion: completion), owner: owner) { $0.suggest = options }
    }

    func submitChoose(promptIDs: [Int32], options: [[Int32]], texts: [String], normalize: Bool, deadline: Double?,
                      owner: UInt32, completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        try accept(.job("choose", completion: completion), owner: owner) { $0.choose = options }
    }

    func submitParse(promptIDs: [Int32], schema: String, automaton: SchemaAutomaton, maxTokens: Int,
                     sampling: SamplingParams, deadline: Double?, confidence: Bool, departures: DepartureFilter?,
                     noNumbers: Bool, owner: UInt32,
                     completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        try accept(.job("parse", completion: completion), owner: owner) { $0.parsePrompt = promptIDs }
    }

    /// The utterance's tokens alone (the fake has no template), or the scripted refusal.
    func parsePrompt(utterance: String, instruction: String?,
                     examples: [(utterance: String, output: String)]) throws(ParsePromptError) -> [Int32] {
        if let e = state.withLock({ $0.parsePromptError }) { throw e }
        return modelFacts.tokenizer.encode(utterance, parseSpecial: false)
    }

    /// Marks the request cancelled (a hanging one ends at the next `deliver`, as a running
    /// request ends within a step); false when it had already ended.
    func cancel(_ handle: RequestHandle) -> Bool {
        state.withLock { s in
            s.cancels += 1
            guard let i = s.submissions.firstIndex(where: { $0.handle === handle }), !s.submissions[i].delivered else { return false }
            s.submissions[i].cancelled = true
            return true
        }
    }

    func stats() -> EngineStats { state.withLock { $0.stats } }

    /// Delivers what every submission not yet ended has coming: its script, or `cancelled`
    /// when it was cancelled; a hanging one that was not cancelled stays. On the caller's
    /// thread, as the engine thread would.
    func deliver() {
        let due: [Submission] = state.withLock { s in
            var due: [Submission] = []
            for i in s.submissions.indices where !s.submissions[i].delivered {
                if case .hang = s.submissions[i].script, !s.submissions[i].cancelled { continue }
                s.submissions[i].delivered = true
                due.append(s.submissions[i])
            }
            return due
        }
        for sub in due {
            switch sub.kind {
            case .generation(let request, let sink):
                func finished(_ reason: SLMModel.FinishReason, _ texts: [String]) {
                    sink(.finished(Completion(finishReason: reason, text: texts.joined(), generatedIDs: texts.map { _ in 1 },
                                              promptTokens: request.promptIDs.count, ttftMs: 1, tokensPerSecond: 100, totalMs: 2)))
                }
                if sub.cancelled { finished(.cancelled, []); continue }
                guard case .stream(let texts, let reason) = sub.script else { continue }
                if request.stream { for t in texts { sink(.text(t, tokens: 1)) } }
                finished(reason, texts)
            case .job(_, let completion):
                if sub.cancelled { completion(.ended(.cancelled, nil)); continue }
                guard case .outcome(let o) = sub.script else { continue }
                completion(o)
            }
        }
    }
}

/// A request handler on a fake engine, with one connection whose outbox the test reads.
final class HandlerHarness {
    let fake: FakeEngine
    let handler: RequestHandler
    let connection: Connection
    private var decoder = FrameDecoder()

    /// 256 byte tokens, a control token and merges for "hello" and " hello".
    static func tinyTokenizer() throws -> Tokenizer {
        var tokens = ["<|end|>"]
        tokens += (0..<256).map { ByteLevel.text(forByte: UInt8($0)) }
        tokens += ["he", "ll", "hell", "hello", "Ġh", "Ġhello"]
        var types = [Int32](repeating: 1, count: tokens.count)
        types[0] = 3
        let path = try TinyGGUF.write([
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string("smollm")),
            ("tokenizer.ggml.tokens", .strings(tokens)),
            ("tokenizer.ggml.token_type", .int32s(types)),
            ("tokenizer.ggml.merges", .strings(["h e", "l l", "he ll", "hell o", "Ġ h", "Ġh ello"])),
            ("tokenizer.ggml.eos_token_id", .uint32(0)),
        ])
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try Tokenizer(gguf: GGUFFile(path: path))
    }

    init(configure: (inout DaemonConfig) -> Void = { _ in }) throws {
        var config = DaemonConfig()
        configure(&config)
        fake = FakeEngine(tokenizer: try Self.tinyTokenizer())
        handler = RequestHandler(config: config, engine: fake, intents: IntentRegistry(), logger: Logger(label: "test"))
        handler.preparation.start()
        // No socket: the test reads the outbox; the peer is unknown (owner UInt32.max).
        connection = Connection(fd: -1, peer: nil, serial: 1, maxFrame: config.maxFrameBytes, maxOutput: config.maxOutputBufferBytes)
    }

    deinit { handler.preparation.stop() }

    func send(_ json: String) {
        handler.handle(Frame(type: .request, payload: Array(json.utf8)), on: connection)
    }

    /// The frames queued for the client since the last call, decoded.
    func take() throws -> [ServerMessage] {
        let bytes: [UInt8] = connection.shared.withLock { s in
            defer { s.sent = s.outbox.count }
            return Array(s.outbox[s.sent...])
        }
        decoder.feed(bytes)
        var out: [ServerMessage] = []
        while let f = try decoder.next() { out.append(try ServerMessage(frame: f)) }
        return out
    }

    /// Waits (up to 20 s: a stuck thread is a failure, not a slow pass) until `n` frames
    /// are queued, and returns them.
    func take(_ n: Int, file: StaticString = #filePath, line: UInt = #line) throws -> [ServerMessage] {
        var got: [ServerMessage] = []
        let end = Date().addingTimeInterval(20)
        while got.count < n && Date() < end {
            got += try take()
            if got.count < n { usleep(1_000) }
        }
        XCTAssertEqual(got.count, n, "frames: \(got)", file: file, line: line)
        return got
    }

    /// Waits until the fake has `n` submissions (requests go through the preparation thread).
    func waitForSubmissions(_ n: Int, file: StaticString = #filePath, line: UInt = #line) {
        let end = Date().addingTimeInterval(20)
        while fake.submissions.count < n && Date() < end { usleep(1_000) }
        XCTAssertEqual(fake.submissions.count, n, "submissions", file: file, line: line)
    }
}
