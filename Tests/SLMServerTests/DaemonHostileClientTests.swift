import Foundation
import SLMProtocol
import SLMTestSupport
import XCTest

/// What a pre-release attack on the daemon found (each case took it down, locked everyone
/// out, stalled every client or leaked across users), replayed against the real binary.
final class DaemonHostileClientTests: XCTestCase {
    func ping(_ c: Client, id: Int64 = 900) -> Bool {
        c.request(.ping, id: .int(id))?.reply == .ping
    }

    /// A schema that trapped the compiler killed the daemon (SIGILL) and every stream.
    func testSchemasThatTrappedTheCompilerAreErrors() throws {
        let d = try Daemon()
        let c = try Client(path: d.socket)
        let nested = #"{\"type\":\"array\",\"maxItems\":2147483646,\"items\":{\"type\":\"array\",\"maxItems\":2147483646,\"items\":{\"type\":\"array\",\"maxItems\":2147483646,\"items\":{\"type\":\"integer\"}}}}"#
        let cases = [
            #"{"op":"parse","id":1,"utterance":"x","schema":"{\"type\":\"integer\",\"minimum\":-9223372036854775808}"}"#,
            #"{"op":"parse","id":2,"utterance":"x","schema":"{\"enum\":[1],\"maximum\":-9223372036854775808}"}"#,
            #"{"op":"complete","id":3,"prompt":"x","max_tokens":4,"schema":"{\"type\":\"integer\",\"minimum\":-9223372036854775808}"}"#,
            #"{"op":"chat","id":4,"messages":[{"role":"user","content":"x"}],"max_tokens":4,"schema":"{\"enum\":[1],\"maximum\":-9223372036854775808}"}"#,
        ]
        for (i, json) in cases.enumerated() {
            c.sendJSON(json)
            let m = c.finish(.int(Int64(i + 1))).final
            XCTAssertEqual(m?.errorCode, "bad_field", "\(json): \(String(describing: m))")
        }
        // The nested-array schema is valid: it compiles and runs.
        c.sendJSON(#"{"op":"parse","id":5,"utterance":"numbers","max_tokens":6,"schema":"{\"type\":\"object\",\"properties\":{\"a\":\#(nested),\"b\":\#(nested)}}"}"#)
        XCTAssertNotNil(c.finish(.int(5)).final?.reply, "parse with huge maxItems")
        XCTAssertTrue(ping(c))
        XCTAssertTrue(d.process.isRunning)
    }

    /// Tokenizing ran on the I/O thread: a 1 MB request held every other client's ping.
    func testAHeavyRequestDoesNotHoldOtherClients() throws {
        let d = try Daemon()
        let heavy = try Client(path: d.socket)
        let other = try Client(path: d.socket)
        let text = String(repeating: "The quick brown fox jumps over the lazy dog; ", count: 20_000)  // ~900 KB
        heavy.send(Request(id: .int(1), .tokenize(TokenizeRequest(text: text))))
        XCTAssertTrue(ping(other), "ping while a 900 KB tokenize is prepared")
        var pfd = pollfd(fd: heavy.fd, events: Int16(POLLIN), revents: 0)
        let tokenizeDoneFirst = poll(&pfd, 1, 0) > 0
        XCTAssertFalse(tokenizeDoneFirst, "the ping was answered only after the tokenize")
        guard case .tokenize(let ids)? = heavy.finish(.int(1)).final?.reply else { return XCTFail("no tokenize reply") }
        XCTAssertGreaterThan(ids.count, 100_000)
    }

    /// 64 idle connections (= max_connections) refused everyone else with `busy`, forever.
    func testIdleConnectionsAreEvictedInsteadOfLockingOthersOut() throws {
        let d = try Daemon(settings: ["max_connections=4", "max_connections_per_uid=4", "socket_mode=0666"])
        let ui = try Client(path: d.socket, asUser: 65534)  // a UI's one persistent connection, another user
        XCTAssertTrue(ping(ui))
        usleep(50_000)
        let idle = try (0..<3).map { _ in try Client(path: d.socket) }
        XCTAssertTrue(idle.allSatisfy { ping($0) })
        usleep(50_000)
        // Full: the next one evicts the longest-idle connection of the user holding the most (root: the first of `idle`).
        let late = try Client(path: d.socket)
        XCTAssertTrue(ping(late), "a new client is served when idle connections fill the server")
        XCTAssertEqual(idle[0].next()?.errorCode, "evicted")
        XCTAssertTrue(idle[0].isClosedByPeer())
        XCTAssertTrue(ping(ui), "the other user's idle connection was not the one evicted")

        // Per user: a user at max_connections_per_uid evicts its own idle connections only.
        let e = try Daemon(settings: ["max_connections=8", "max_connections_per_uid=2", "socket_mode=0666"])
        let uiE = try Client(path: e.socket, asUser: 65534)
        XCTAssertTrue(ping(uiE))
        let a = try Client(path: e.socket), b = try Client(path: e.socket)
        XCTAssertTrue(ping(a) && ping(b))
        let c = try Client(path: e.socket)
        XCTAssertTrue(ping(c))
        XCTAssertEqual(a.next()?.errorCode, "evicted")
        XCTAssertTrue(ping(uiE))
        // A connection with a request in flight is not idle and is never evicted.
        b.send(Request(id: .int(1), .complete(CompleteRequest(prompt: "Once upon a time", options: GenerationOptions(maxTokens: 300, temperature: 0)))))
        usleep(100_000)
        XCTAssertTrue(ping(c))
        let f = try Client(path: e.socket)
        XCTAssertTrue(ping(f))
        XCTAssertNotNil(b.finish(.int(1)).final?.generation, "b's generation ran to its end")
    }

    /// Out of descriptors, accept() failed with EMFILE on every poll and the I/O thread spun.
    func testOutOfDescriptorsRefusesWithoutSpinning() throws {
        // Connection caps above the descriptor limit, so descriptors run out first.
        let d = try Daemon(settings: ["max_connections=1000", "max_connections_per_uid=1000"],
                           launcher: ["/usr/bin/prlimit", "--nofile=40", "--"])
        var clients: [Client] = []
        var refused = 0
        for _ in 0..<60 {
            guard let c = try? Client(path: d.socket) else { break }
            clients.append(c)
            c.send(Request(id: .int(1), .ping))
            if c.next()?.errorCode == "busy" { refused += 1 }  // a connection-level error: no id
        }
        XCTAssertGreaterThan(refused, 0, "some clients were refused with busy while out of descriptors")
        let before = cpuSeconds(d.pid)
        sleep(1)
        let used = cpuSeconds(d.pid) - before
        XCTAssertLessThan(used, 0.3, "CPU seconds in one second while out of descriptors")
        clients.removeAll()
        usleep(200_000)
        XCTAssertTrue(ping(try Client(path: d.socket)), "serves again once descriptors are free")
    }

    /// user + system CPU time of a process, from /proc/PID/stat.
    func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = Double(fields[11])! + Double(fields[12])!  // utime, stime (fields 14 and 15)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The prefix cache and sessions were shared across users: another uid could probe
    /// what a victim typed (`reused_tokens`) and supersede its generations; `info` gave
    /// anyone the model's absolute path.
    func testCachesSessionsAndPathsAreNotSharedAcrossUsers() throws {
        let d = try Daemon(settings: ["socket_mode=0666"])
        let victim = try Client(path: d.socket)
        let prefix = "Reminder: my bank PIN is 4921 and the safe code is"
        func suggest(_ c: Client, id: Int64) -> Int? {
            guard case .suggest(let s)? = c.request(.suggest(SuggestRequest(prefix: prefix, n: 2, maxTokens: 3)), id: .int(id))?.reply
            else { return nil }
            return s.reusedTokens
        }
        XCTAssertEqual(suggest(victim, id: 1), 0)
        XCTAssertGreaterThan(suggest(victim, id: 2) ?? 0, 0, "the same user reuses its own prefix")
        let attacker = try Client(path: d.socket, asUser: 65534)
        XCTAssertEqual(suggest(attacker, id: 1), 0, "another user's right guess reuses nothing")

        // Sessions: the same name from another user is another session.
        let long = #"{"op":"complete","id":ID,"prompt":"Once upon a time","max_tokens":120,"temperature":0,"session":"s"}"#
        let short = #"{"op":"complete","id":ID,"prompt":"Hello","max_tokens":2,"temperature":0,"session":"s"}"#
        victim.sendJSON(long.replacingOccurrences(of: "ID", with: "10"))
        usleep(100_000)
        attacker.sendJSON(short.replacingOccurrences(of: "ID", with: "11"))
        XCTAssertNotNil(attacker.finish(.int(11)).final?.generation)
        XCTAssertEqual(victim.finish(.int(10)).final?.generation?.finishReason, .length,
                       "not superseded by another user's session of the same name")
        // The same user's session name does supersede.
        victim.sendJSON(long.replacingOccurrences(of: "ID", with: "12"))
        usleep(100_000)
        victim.sendJSON(short.replacingOccurrences(of: "ID", with: "13"))
        let superseded = victim.finish(.int(12)).final
        XCTAssertTrue(superseded?.generation?.finishReason.rawValue == "superseded" || superseded?.errorCode == "cancelled",
                      "\(String(describing: superseded))")
        XCTAssertNotNil(victim.finish(.int(13)).final?.generation)

        guard case .info(let info)? = attacker.request(.info, id: .int(20))?.reply else { return XCTFail("no info") }
        let text = String(decoding: JSONValue.object(info.model).serialized(), as: UTF8.self)
        XCTAssertFalse(text.contains("/"), "info names no path: \(text)")
        XCTAssertTrue(text.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), text)
    }

    /// allowed_gids checked only the primary gid: a user added with `usermod -aG` was refused.
    func testSupplementaryGroupsCountForAllowedGIDs() throws {
        let d = try Daemon(settings: ["socket_mode=0666", "allowed_gids=4242"])
        let member = try Client(path: d.socket, asUser: 65534, groups: [4242])
        XCTAssertTrue(ping(member), "a member through a supplementary group is allowed")
        let stranger = try Client(path: d.socket, asUser: 65534, groups: [])
        XCTAssertEqual(stranger.next()?.errorCode, "permission_denied")
    }

    /// A reply above max_output_buffer closed the connection with no error; a stream that
    /// ended inside a frame got no malformed_frame; after SHUT_WR, requests were dropped.
    func testOversizedRepliesTruncatedStreamsAndHalfClose() throws {
        let d = try Daemon(settings: ["max_frame=64K", "max_output_buffer=64K"])
        let c = try Client(path: d.socket)
        // 40 KB of text, one token per byte: a ~120 KB list of ids.
        let text = String(repeating: "0a1b2c3d4e5f6g7h8i9j", count: 2000)
        let m = c.request(.tokenize(TokenizeRequest(text: text)), id: .int(1))
        XCTAssertEqual(m?.errorCode, "reply_too_large")
        XCTAssertTrue(ping(c), "the connection stays usable")

        let t = try Client(path: d.socket)
        t.sendRaw(Array(Request(id: .int(1), .ping).frame().encode().prefix(7)))
        shutdown(t.fd, Int32(SHUT_WR))
        XCTAssertEqual(t.next()?.errorCode, "malformed_frame")
        XCTAssertTrue(t.isClosedByPeer())

        let h = try Client(path: d.socket)
        h.send(Request(id: .int(3), .complete(CompleteRequest(prompt: "The capital of France is",
                                                                options: GenerationOptions(maxTokens: 8, temperature: 0, stream: false)))))
        shutdown(h.fd, Int32(SHUT_WR))
        XCTAssertEqual(h.finish(.int(3)).final?.generation?.text, " Paris.\n\nThe United States has")
        XCTAssertTrue(h.isClosedByPeer())
    }

    /// The protocol accepted ranges the engine refused (repeat_penalty 0…100 vs (0, 10],
    /// top_p 0); a ping reusing an in-flight id got a second final frame under that id.
    func testRangesAgreeAndImmediateOpsRespectInFlightIDs() throws {
        let d = try Daemon()
        let c = try Client(path: d.socket)
        for (json, field) in [(#"{"op":"complete","id":1,"prompt":"x","repeat_penalty":50}"#, "repeat_penalty"),
                              (#"{"op":"complete","id":2,"prompt":"x","top_p":0}"#, "top_p"),
                              (#"{"op":"complete","id":3,"prompt":"x","repeat_window":70000}"#, "repeat_window")] {
            c.sendJSON(json)
            guard case .error(let e)? = c.next() else { return XCTFail(json) }
            XCTAssertEqual(e.code.name, "bad_field", json)
            XCTAssertTrue(e.message.contains(field), e.message)
        }
        c.send(Request(id: .int(7), .complete(CompleteRequest(prompt: "Once upon a time", options: GenerationOptions(maxTokens: 64, temperature: 0)))))
        c.send(Request(id: .int(7), .ping))
        var sawDuplicate = false, sawEnd = false
        while let m = c.next() {
            if m.errorCode == "duplicate_id" { sawDuplicate = true; continue }
            if case .reply(let r) = m, r.id == .int(7) { XCTAssertNotEqual(r.body, .ping); sawEnd = true; break }
        }
        XCTAssertTrue(sawDuplicate && sawEnd)
    }
}
