import Foundation
import SLMProtocol
import SLMTestSupport
import XCTest

/// Scheduler behaviour through the socket: thread cap, memory budget, queue cap, and
/// batching invariance for concurrent streams.
final class DaemonSchedulerTests: XCTestCase {
    func greedy(_ prompt: String, _ n: Int) -> RequestBody {
        .complete(CompleteRequest(prompt: prompt, options: GenerationOptions(maxTokens: n, temperature: 0, stream: true)))
    }

    static let prompts = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colors are"]

    func testFourConcurrentStreamsMatchRunningAloneAndThreadsStayCapped() throws {
        let d = try Daemon(settings: ["max_sequences=4"])
        // The socket accepts connections (backlog) before the I/O and preparation threads
        // start: count the baseline once a request has been answered.
        XCTAssertEqual(try Client(path: d.socket).request(.ping)?.reply, .ping)
        let baseline = d.threadCount()
        var alone: [String] = []
        let c = try Client(path: d.socket)
        for (i, p) in Self.prompts.enumerated() {
            c.send(Request(id: .int(Int64(i)), greedy(p, 32)))
            alone.append(c.finish(.int(Int64(i))).events.map(\.text).joined())
        }
        // Four clients at once: each stream equals its solo run.
        let clients = try Self.prompts.map { _ in try Client(path: d.socket) }
        for (i, (cl, p)) in zip(clients, Self.prompts).enumerated() { cl.send(Request(id: .int(Int64(i)), greedy(p, 32))) }
        var maxThreads = 0
        for (i, cl) in clients.enumerated() {
            maxThreads = max(maxThreads, d.threadCount())
            let text = cl.finish(.int(Int64(i))).events.map(\.text).joined()
            XCTAssertEqual(text, alone[i], "stream \(i)")
        }
        // main + I/O + request preparation + engine + 1 pool worker (2 compute threads);
        // Dispatch may add one.
        XCTAssertLessThanOrEqual(maxThreads, 6, "threads: baseline \(baseline), max \(maxThreads)")
        XCTAssertEqual(maxThreads, baseline, "no thread is created per request")
    }

    func testMemoryBudgetAndQueueCap() throws {
        // 16 MiB: scratch plus room for ~600 tokens of KV (23 KiB each).
        let d = try Daemon(settings: ["memory_budget=16M", "max_sequences=4", "max_queued=1", "max_context=2048", "max_tokens=1024"])
        let c = try Client(path: d.socket)
        // Could never fit: refused at once.
        c.send(Request(id: .int(1), greedy("Hello", 1000)))
        XCTAssertEqual(c.finish(.int(1)).final?.errorCode, "over_memory_budget")
        // Each needs ~400 tokens of KV: one runs, one queues, the rest are busy.
        for i in 2...6 { c.send(Request(id: .int(Int64(i)), greedy("Once upon a time", 400))) }
        var codes: [String] = []
        var done = 0
        var peakKV = 0.0
        let probe = try Client(path: d.socket)
        while done < 5, let m = c.next() {
            switch m {
            case .error(let e): codes.append(e.code.name); done += 1
            case .reply: done += 1
            case .event:
                if case .stats(let s)? = probe.request(.stats, id: .int(1))?.reply {
                    peakKV = max(peakKV, (s.gauges["kv_bytes_in_use"] ?? 0) + (s.gauges["scratch_bytes"] ?? 0))
                    XCTAssertLessThanOrEqual(s.gauges["active"] ?? 0, 1)
                }
            }
        }
        XCTAssertTrue(codes.contains("busy"), "\(codes)")
        XCTAssertLessThanOrEqual(peakKV, 16 * 1024 * 1024)
        guard case .stats(let s)? = probe.request(.stats, id: .int(2))?.reply else { return XCTFail() }
        XCTAssertEqual(s.counters["requests_refused_over_memory_budget"], 1)
        XCTAssertGreaterThanOrEqual(s.counters["requests_refused_busy"] ?? 0, 1)
        XCTAssertEqual(s.gauges["kv_bytes_in_use"], 0)
    }

    func testContextOverflowIsRefused() throws {
        let d = try Daemon(settings: ["max_context=64", "max_tokens=32"])
        let c = try Client(path: d.socket)
        c.send(Request(id: .int(1), greedy(String(repeating: "word ", count: 60), 32)))
        XCTAssertEqual(c.finish(.int(1)).final?.errorCode, "context_overflow")
    }
}
