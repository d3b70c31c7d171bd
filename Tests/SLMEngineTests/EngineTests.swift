import Foundation
import Logging
import SLMKernels
import SLMModel
import Synchronization
import XCTest
@testable import SLMEngine
import SLMTestSupport

/// Collects a request's events; `wait` blocks until the final one.
final class Collector: @unchecked Sendable {
    private let lock = NSCondition()
    private var deltas: [String] = []
    private var completion: Completion?

    var sink: @Sendable (EngineEvent) -> Void {
        { [self] event in
            lock.lock()
            switch event {
            case .text(let t, _): deltas.append(t)
            case .finished(let c):
                precondition(completion == nil, "finished delivered twice")
                completion = c
            }
            lock.broadcast()
            lock.unlock()
        }
    }

    func wait(timeout: Double = 120) -> Completion? {
        lock.lock()
        defer { lock.unlock() }
        let end = Date(timeIntervalSinceNow: timeout)
        while completion == nil { if !lock.wait(until: end) { break } }
        return completion
    }

    var streamed: String { lock.lock(); defer { lock.unlock() }; return deltas.joined() }
    var deltaCount: Int { lock.lock(); defer { lock.unlock() }; return deltas.count }
}

enum Shared {
    static let model: Model? = {
        try? Model(path: TestModel.path)
    }()

    static func requireModel() throws -> Model {
        guard let m = model else {
            XCTFail(TestModel.missingMessage)
            throw CancellationError()
        }
        return m
    }
}

extension Shared {
    /// A started engine on the real model: 2 threads, 512-token context, 256-token cap.
    static func engine(_ edit: (inout EngineConfig) -> Void = { _ in }) throws -> Engine {
        var c = EngineConfig()
        c.threads = 2
        c.maxContext = 512
        c.maxTokens = 256
        edit(&c)
        let e = try Engine(model: try requireModel(), config: c, logger: Logger(label: "test"))
        try e.start(warmUp: false)
        return e
    }
}

func threadCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
}

final class EngineTests: XCTestCase {
    func engine(_ edit: (inout EngineConfig) -> Void = { _ in }) throws -> Engine { try Shared.engine(edit) }

    func greedy(_ prompt: String, _ maxTokens: Int, stop: [String] = []) throws -> GenerationRequest {
        let m = try Shared.requireModel()
        return GenerationRequest(promptIDs: m.tokenizer.encode(prompt),
                                 options: GenerationOptions(maxTokens: maxTokens, sampling: .greedy, stop: stop))
    }

    static let prompts = ["The capital of France is", "Once upon a time", "def fibonacci(n):",
                          "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"]

    /// Four concurrent streams give exactly what each gives alone: batching never changes
    /// a sequence's logits.
    func testConcurrentStreamsMatchRunningAlone() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        var alone: [Completion] = []
        for p in Self.prompts {
            let c = Collector()
            _ = try e.submit(try greedy(p, 40), sink: c.sink)
            alone.append(try XCTUnwrap(c.wait()))
        }
        let collectors = Self.prompts.map { _ in Collector() }
        for (p, c) in zip(Self.prompts, collectors) { _ = try e.submit(try greedy(p, 40), sink: c.sink) }
        for (i, c) in collectors.enumerated() {
            let done = try XCTUnwrap(c.wait())
            XCTAssertEqual(done.generatedIDs, alone[i].generatedIDs, "prompt \(i)")
            XCTAssertEqual(done.text, alone[i].text)
            XCTAssertEqual(c.streamed, done.text, "streamed deltas add up to the text")
        }
        let s = e.stats()
        XCTAssertEqual(s.kvBytesInUse, 0)
        XCTAssertEqual(s.active, 0)
        XCTAssertEqual(s.finished[.length, default: 0] + s.finished[.stop, default: 0], 8)
    }

    func testThreadCapIsNeverExceeded() throws {
        let before = threadCount()
        let e = try engine { $0.threads = 3 }
        let c = Collector()
        _ = try e.submit(try greedy("Hello", 16), sink: c.sink)
        let during = threadCount()
        _ = c.wait()
        XCTAssertLessThanOrEqual(during - before, 3, "engine thread + 2 workers")
        e.shutdown(grace: 0)
    }

    func testMemoryBudgetQueuesThenRefuses() throws {
        let m = try Shared.requireModel()
        let perToken = KVCache.bytes(config: m.config, capacity: 1)
        let scratch = Engine.scratchBytes(model: m.config, config: {
            var c = EngineConfig(); c.threads = 2; c.maxContext = 512; c.maxTokens = 256; return c
        }())
        // Room for one 100-token sequence at a time.
        let budget = scratch + perToken * 150
        let e = try engine { $0.memoryBudgetBytes = budget }
        defer { e.shutdown(grace: 0) }
        let a = Collector(), b = Collector()
        _ = try e.submit(try greedy("The capital of France is", 90), sink: a.sink)
        _ = try e.submit(try greedy("Once upon a time", 90), sink: b.sink)
        var peak = 0
        while b.wait(timeout: 0.01) == nil {
            let s = e.stats()
            peak = max(peak, s.kvBytesInUse + s.scratchBytes)
            XCTAssertLessThanOrEqual(s.active, 1)
        }
        XCTAssertNotNil(a.wait())
        XCTAssertLessThanOrEqual(peak, budget)
        XCTAssertLessThanOrEqual(e.stats().kvBytesPeak + e.stats().scratchBytes, budget)
        // Never fits: refused at once with the right code.
        XCTAssertThrowsError(try e.submit(try greedy("Hi", 200), sink: Collector().sink)) { err in
            XCTAssertEqual((err as? EngineError)?.code, .overMemoryBudget)
        }
        XCTAssertEqual(e.stats().refused[.overMemoryBudget], 1)
    }

    func testQueueCapGivesBusy() throws {
        let e = try engine { $0.maxSequences = 1; $0.maxQueued = 2 }
        defer { e.shutdown(grace: 0) }
        var handles: [RequestHandle] = []
        var busy = 0
        for _ in 0..<8 {
            do { handles.append(try e.submit(try greedy("Once upon a time", 200), sink: Collector().sink)) }
            catch let err as EngineError { XCTAssertEqual(err.code, .busy); busy += 1 }
        }
        XCTAssertGreaterThan(busy, 0)
        XCTAssertLessThanOrEqual(e.stats().queued, 2)
        for h in handles { e.cancel(h) }
    }

    func testCancelRunningAndQueuedFreesMemoryAndSlots() throws {
        let e = try engine { $0.maxSequences = 1 }
        defer { e.shutdown(grace: 0) }
        let running = Collector(), queued = Collector()
        // Greedy continuations of these run for hundreds of tokens without an end token.
        let h1 = try e.submit(try greedy("Once upon a time", 250), sink: running.sink)
        let h2 = try e.submit(try greedy("The quick brown fox", 250), sink: queued.sink)
        let until = monotonicSeconds() + 30
        while running.deltaCount < 3 && monotonicSeconds() < until { usleep(2000) }
        XCTAssertGreaterThanOrEqual(running.deltaCount, 3)
        XCTAssertTrue(e.cancel(h2))
        XCTAssertEqual(queued.wait(timeout: 5)?.finishReason, .cancelled)
        let seen = running.deltaCount
        XCTAssertTrue(e.cancel(h1))
        let c = try XCTUnwrap(running.wait(timeout: 30))
        XCTAssertEqual(c.finishReason, .cancelled)
        // Within one step: at most the token of the step in flight (and its text) after.
        XCTAssertLessThanOrEqual(c.generatedTokens, seen + 2, "cancellation takes effect within a step")
        XCTAssertLessThan(c.generatedTokens, 250)
        let s = e.stats()
        XCTAssertEqual(s.kvBytesInUse, 0)
        XCTAssertEqual(s.active, 0)
        XCTAssertEqual(s.queued, 0)
        XCTAssertEqual(s.finished[.cancelled], 2)
        XCTAssertFalse(e.cancel(h1), "already finished")
        // The slot is free again.
        let next = Collector()
        _ = try e.submit(try greedy("Hi", 4), sink: next.sink)
        XCTAssertNotNil(next.wait(timeout: 10))
    }

    func testDeadlineEndsRequest() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        var r = try greedy("Once upon a time", 250)
        r.deadline = monotonicSeconds() + 0.15
        let c = Collector()
        _ = try e.submit(r, sink: c.sink)
        let done = try XCTUnwrap(c.wait(timeout: 10))
        XCTAssertEqual(done.finishReason, .deadline)
        XCTAssertEqual(e.stats().kvBytesInUse, 0)
    }

    func testStopStringsLengthAndContextChecks() throws {
        let e = try engine()
        defer { e.shutdown(grace: 0) }
        let c = Collector()
        _ = try e.submit(try greedy("The capital of France is", 40, stop: ["."]), sink: c.sink)
        let done = try XCTUnwrap(c.wait())
        XCTAssertEqual(done.finishReason, .stop)
        XCTAssertEqual(done.text, " Paris")
        let l = Collector()
        _ = try e.submit(try greedy("The capital of France is", 3), sink: l.sink)
        XCTAssertEqual(l.wait()?.finishReason, .length)
        XCTAssertEqual(l.wait()?.generatedTokens, 3)
        XCTAssertThrowsError(try e.submit(try greedy(String(repeating: "word ", count: 400), 200), sink: Collector().sink)) {
            XCTAssertEqual(($0 as? EngineError)?.code, .contextOverflow)
        }
        XCTAssertThrowsError(try e.submit(try greedy("x", 100_000), sink: Collector().sink)) {
            XCTAssertEqual(($0 as? EngineError)?.code, .badRequest)
        }
    }

    func testShutdownCancelsWhatIsLeft() throws {
        let e = try engine()
        let c = Collector()
        _ = try e.submit(try greedy("Once upon a time", 250), sink: c.sink)
        e.shutdown(grace: 0.05)
        XCTAssertEqual(c.wait(timeout: 5)?.finishReason, .cancelled)
        XCTAssertThrowsError(try e.submit(try greedy("x", 4), sink: Collector().sink)) {
            XCTAssertEqual(($0 as? EngineError)?.code, .shuttingDown)
        }
    }
}
