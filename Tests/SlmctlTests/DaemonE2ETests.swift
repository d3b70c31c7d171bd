import Foundation
import Glibc
import SLMProtocol
import SLMTestSupport
import XCTest

/// slmctl against the real `slmd serve` and the real model (built beside the test bundle
/// by `swift build --build-tests`). A missing model fails with instructions, never skips.
final class DaemonE2ETests: XCTestCase {
    /// A private `slmd serve` on a temporary socket (SLMTestSupport's launcher), with an
    /// empty config file so /etc/slmd/slmd.conf on this machine cannot change the defaults.
    final class Daemon {
        let process: DaemonProcess
        var socket: String { process.socket }

        init(settings: [String] = []) throws {
            process = try DaemonProcess(settings: settings, isolatedConfig: true, dirPrefix: "slmctl-e2e")
        }

        func stop() { process.terminate() }
    }

    struct Unavailable: Error {}

    var daemon: Daemon!

    override func setUpWithError() throws { daemon = try Daemon() }
    override func tearDown() { daemon?.stop() }

    func run(_ args: [String], stdin: String? = nil, timeout: Double = 120,
             whileRunning: ((Slmctl.Running) throws -> Void)? = nil) throws -> RunResult {
        try Slmctl.run(args, env: ["SLMD_SOCKET": daemon.socket], stdin: stdin, timeout: timeout, whileRunning: whileRunning)
    }

    func stats() throws -> SLMProtocol.Stats {
        let r = try run(["stats", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard case .stats(let s) = try Reply(payload: Array(r.stdout.utf8)).body else { throw Unavailable() }
        return s
    }

    func testStreamingMatchesJSONAndNoStream() throws {
        let args = ["complete", "The capital of France is", "--max-tokens", "12", "--temperature", "0"]
        let plain = try run(args)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stdout.isEmpty)

        let json = try run(args + ["--json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let lines = json.stdout.split(separator: "\n").map { try? JSONValue.parse(Array($0.utf8)) }
        XCTAssertGreaterThan(lines.count, 1)
        var text = ""
        var lastCount: Int64 = 0
        for case .object(let m)? in lines.dropLast() {
            XCTAssertEqual(m["event"], "token")
            if case .string(let s)? = m["text"] { text += s }
            if case .int(let c)? = m["token_count"] { XCTAssertGreaterThan(c, lastCount); lastCount = c }
        }
        guard case .object(let final)?? = lines.last else { return XCTFail(json.stdout) }
        XCTAssertEqual(final["op"], "complete")
        XCTAssertTrue(final["finish_reason"] == "length" || final["finish_reason"] == "stop", "\(final)")
        XCTAssertEqual(text, plain.stdout, "greedy streams agree")

        let whole = try run(args + ["--no-stream", "-v"])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        XCTAssertEqual(whole.stdout, plain.stdout)
        XCTAssertTrue(whole.stderr.hasPrefix("["), whole.stderr)
        XCTAssertTrue(whole.stderr.contains("tok/s"), whole.stderr)
    }

    func testSuggestAndChooseJSON() throws {
        let r = try run(["suggest", "-n", "3", "--max-tokens", "6", "--json", "Turn on the kitchen li"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard case .object(let obj)? = try? JSONValue.parse(Array(r.stdout.utf8)),
              case .array(let items)? = obj["suggestions"] else { return XCTFail(r.stdout) }
        XCTAssertFalse(items.isEmpty)
        var probs: [Double] = []
        for case .object(let s) in items {
            guard case .string? = s["text"] else { return XCTFail("text missing: \(s)") }
            if case .double(let p)? = s["prob"] { probs.append(p) }
        }
        XCTAssertEqual(probs, probs.sorted(by: >))

        let c = try run(["choose", "--prompt", "Review: It broke after one day. Awful.\nSentiment:",
                         "--option", " positive", "--option", " negative", "--json"])
        XCTAssertEqual(c.status, 0, c.stderr)
        guard case .object(let ch)? = try? JSONValue.parse(Array(c.stdout.utf8)) else { return XCTFail(c.stdout) }
        XCTAssertEqual(ch["best"], " negative")
        guard case .array(let opts)? = ch["options"] else { return XCTFail(c.stdout) }
        XCTAssertEqual(opts.count, 2)
        let bad = try run(["suggest", "-n", "9", "x"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertEqual(try run(["suggest", "--mode", "sentence", "x"]).status, 2)
        XCTAssertEqual(try run(["suggest", "--min-prob", "2", "x"]).status, 2)

        // Word mode, and an empty field after a context: n suggestions each.
        let words = try run(["suggest", "-n", "3", "--mode", "word", "Remind me to call my mother tom"])
        XCTAssertEqual(words.status, 0, words.stderr)
        let lines = words.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3, words.stdout)
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("Remind me to call my mother tom") && !$0.split(separator: "\t")[0].hasSuffix(" ") })
        let empty = try run(["suggest", "-n", "2", "--context", "Subject:", "--min-prob", "0", ""])
        XCTAssertEqual(empty.status, 0, empty.stderr)
        XCTAssertEqual(empty.stdout.split(separator: "\n").count, 2, empty.stdout)
    }

    func testParseWithAnIntentAndInline() throws {
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/examples")
        daemon.stop()
        daemon = try Daemon(settings: ["intents_dir=\(examples.path)/intents.d"])
        let r = try run(["parse", "--intent", "smart_home", "--json", "lock the garage door"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard case .object(let obj)? = try? JSONValue.parse(Array(r.stdout.utf8)),
              case .object(let result)? = obj["result"], case .object(let conf)? = obj["confidence"] else { return XCTFail(r.stdout) }
        XCTAssertEqual(Set(result.keys), ["action", "device", "room", "value"])
        XCTAssertEqual(Set(conf.keys), ["action", "device", "room", "value"])
        for case .double(let p) in conf.values { XCTAssertTrue(p > 0 && p <= 1, "\(p)") }

        let v = try run(["parse", "--intent", "smart_home", "--verbose", "lock the garage door"])
        XCTAssertEqual(v.status, 0, v.stderr)
        let lines = v.stdout.split(separator: "\n")
        // The shipped intent orders device and room before the action (it scores better).
        XCTAssertTrue(lines.first?.hasPrefix(#"{"device":""#) == true, v.stdout)
        XCTAssertEqual(lines.dropFirst().prefix(4).map { $0.split(separator: ":").first.map(String.init) ?? "" },
                       ["  device", "  room", "  action", "  value"], "confidences in the output's key order")

        let inline = try run(["parse", "--schema", examples.path + "/smart-home.schema.json", "--instruction", "JSON only.",
                              "--examples", examples.path + "/smart-home.examples.json", "lock the garage door"])
        XCTAssertEqual(inline.status, 0, inline.stderr)
        XCTAssertTrue(inline.stdout.hasPrefix(#"{"action":""#), inline.stdout)

        // Not a command: the result is null, the reason is on stderr, the status is 9.
        let joke = try run(["parse", "--intent", "smart_home", "--json", "tell me a joke"])
        XCTAssertEqual(joke.status, 9, joke.stderr)
        XCTAssertTrue(joke.stderr.contains("no match"), joke.stderr)
        guard case .object(let j)? = try? JSONValue.parse(Array(joke.stdout.utf8)) else { return XCTFail(joke.stdout) }
        XCTAssertEqual(j["matched"], false)
        XCTAssertEqual(j["result"], .null)
        guard case .double(let score)? = j["match_score"] else { return XCTFail(joke.stdout) }
        XCTAssertTrue((0...1).contains(score))
        XCTAssertEqual(obj["matched"], true, r.stdout)
        // A value the schema cannot hold is named, and the neighbour is not printed.
        let oven = try run(["parse", "--intent", "smart_home", "set the oven to 180 degrees"])
        XCTAssertEqual(oven.status, 9, oven.stderr)
        XCTAssertTrue(oven.stderr.contains("value: 180 is above the maximum 100"), oven.stderr)
        XCTAssertFalse(oven.stdout.contains("18"), oven.stdout)
        // The operating point from the command line: nothing is certain enough for 1.
        XCTAssertEqual(try run(["parse", "--intent", "smart_home", "--min-match-score", "1", "lock the garage door"]).status, 9)
        XCTAssertEqual(try run(["parse", "--intent", "smart_home", "--min-match-score", "2", "x"]).status, 2)

        let unknown = try run(["parse", "--intent", "nope", "x"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown intent 'nope'"), unknown.stderr)
        XCTAssertEqual(try run(["parse", "x"]).status, 2, "neither --intent nor --schema")
    }

    /// docs/examples/gateway.py acts on matched commands only, and asks before the risky ones.
    func testTheExampleGatewayActsOnlyOnMatchedCommands() throws {
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/examples")
        daemon.stop()
        daemon = try Daemon(settings: ["intents_dir=\(examples.path)/intents.d"])
        let gateway = examples.appendingPathComponent("gateway.py").path
        func gate(_ args: [String]) throws -> RunResult {
            try Slmctl.run(["--slmctl", try Slmctl.path] + args, env: ["SLMD_SOCKET": daemon.socket], executable: gateway, timeout: 120)
        }
        let lock = try gate(["lock the office door"])
        XCTAssertEqual(lock.status, 0, lock.stdout + lock.stderr)
        XCTAssertEqual(lock.stdout, "ACT office/door lock\n")
        let joke = try gate(["tell me a joke"])
        XCTAssertEqual(joke.status, 1, joke.stdout + joke.stderr)
        XCTAssertTrue(joke.stdout.hasPrefix("NO:") && !joke.stdout.contains("ACT"), joke.stdout)
        let oven = try gate(["set the oven to 180 degrees"])
        XCTAssertEqual(oven.status, 1)
        XCTAssertEqual(oven.stdout, "NO: value cannot be 180 (above the maximum 100)\n")
        // Unlocking is always confirmed: without a terminal or --yes it is not done.
        let unlock = try gate(["unlock the kitchen door"])
        XCTAssertEqual(unlock.status, 1, unlock.stdout + unlock.stderr)
        XCTAssertTrue(unlock.stdout.hasPrefix("NOT DONE"), unlock.stdout)
        let yes = try gate(["--yes", "unlock the kitchen door"])
        XCTAssertEqual(yes.status, 0, yes.stdout + yes.stderr)
        XCTAssertEqual(yes.stdout, "ACT kitchen/door unlock\n")
    }

    func testChatAndStdin() throws {
        let r = try run(["chat", "--system", "You are terse.", "-", "--max-tokens", "8", "--temperature", "0"], stdin: "Say hello.")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.isEmpty)
    }

    func testPingStatusVersion() throws {
        var r = try run(["ping"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("slmd "), r.stdout)
        XCTAssertTrue(r.stdout.contains(" is alive at \(daemon.socket): ping "), r.stdout)
        XCTAssertEqual(try run(["health", "-q"]).status, 0)

        r = try run(["status"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for key in ["● slmd - small language model daemon", "State: running", "Model: ", "Uptime: ", "Requests: 0 active, 0 queued",
                    "Memory: ", "Kernels: ", "Threads: 2", "socket \(daemon.socket)",
                    "(llama, 134.5M parameters)", "Tensors: 210 Q4_1, 61 F32, 1 Q8_0",
                    "Text: tokenizer gpt2 (smollm), chat template chatml"] {
            XCTAssertTrue(r.stdout.contains(key), "status lacks \(key):\n\(r.stdout)")
        }
        r = try run(["version"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("slmctl 0.1.0 (protocol 1)\nslmd "), r.stdout)
    }

    func testTokenizeRoundTrip() throws {
        let t = try run(["tokenize", "Hello world"])
        XCTAssertEqual(t.status, 0, t.stderr)
        let ids = t.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        XCTAssertFalse(ids.isEmpty)
        XCTAssertTrue(ids.allSatisfy { Int($0) != nil }, t.stdout)
        let d = try run(["detokenize"] + ids)
        XCTAssertEqual(d.status, 0, d.stderr)
        XCTAssertEqual(d.stdout, "Hello world")
        // Out-of-vocabulary id: bad_field → 7.
        let bad = try run(["detokenize", "2000000000"])
        XCTAssertEqual(bad.status, 7, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("bad_field"), bad.stderr)
    }

    func testBadRequestFromServerCaps() throws {
        // Above the daemon's max_tokens (512 by default): the server's bad_field → 7.
        let r = try run(["complete", "x", "--max-tokens", "100000"])
        XCTAssertEqual(r.status, 7, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("slmctl: slmd: bad_field: "), r.stderr)
    }

    func testStatsPrometheus() throws {
        XCTAssertEqual(try run(["complete", "Hi", "--max-tokens", "4"]).status, 0)
        let r = try run(["stats", "--prometheus"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for key in ["# TYPE slmd_generated_tokens_total counter", "# TYPE slmd_active gauge", "# TYPE slmd_ttft_ms summary",
                    "slmd_ttft_ms{quantile=\"0.5\"} ", "slmd_ttft_ms_count 1"] {
            XCTAssertTrue(r.stdout.contains(key), "lacks \(key):\n\(r.stdout)")
        }
        try assertPrometheusWellFormed(r.stdout)
    }

    /// Ctrl-C in the middle of a long generation: slmctl cancels it, exits 130, and the
    /// daemon counts a cancelled generation.
    func testCtrlCCancelsOnTheDaemon() throws {
        let before = try stats().counters["requests_finished_cancelled"] ?? 0
        let start = Date()
        let r = try run(["complete", "Count: 1, 2, 3, 4, 5, 6, 7,", "--max-tokens", "500", "--temperature", "0"]) { running in
            XCTAssertTrue(waitUntil(timeout: 60) { running.stdout.count > 8 }, "no tokens streamed")
            running.interrupt()
        }
        XCTAssertEqual(r.status, 130, r.stderr)
        XCTAssertEqual(r.stderr, "slmctl: cancelled\n")
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
        let after = try stats()
        XCTAssertEqual(after.counters["requests_finished_cancelled"], before + 1, "\(after.counters)")
        XCTAssertEqual(after.gauges["active"], 0)
    }

    func testBenchAgainstDaemon() throws {
        let r = try run(["bench", "-c", "2", "-n", "4", "--max-tokens", "8", "--prompt", "Once upon a time"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("requests    4 ok, 0 failed"), r.stdout)
        XCTAssertTrue(r.stdout.contains("ttft ms     p50 "), r.stdout)
        XCTAssertTrue(r.stdout.contains("aggregate   "), r.stdout)
    }
}
