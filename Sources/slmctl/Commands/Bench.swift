#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import SLMProtocol

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load-test the daemon: N concurrent clients sending M requests in all.",
        discussion: """
            Each of the -c clients has its own connection and sends one request at a time \
            until -n requests have been sent in all. Prints the client-side time to first \
            token (TTFT) and each request's decoding speed (tok/s, from the reply's usage) \
            at p50/p90/p99, and the aggregate throughput: generated tokens over wall time. \
            Busy and other errors are counted and reported by code; the exit status is \
            non-zero only if every request failed.
            """)

    @Option(name: [.customShort("c"), .long], help: "Concurrent clients (connections).")
    var concurrency = 1

    @Option(name: [.customShort("n"), .long], help: "Requests to send in all.")
    var requests = 8

    @Option(help: ArgumentHelp("Prompt of every request.", valueName: "text"))
    var prompt = "Write a short story about a lighthouse keeper who finds a message in a bottle."

    @Flag(help: "Send the prompt as a chat user message instead of a raw completion.")
    var chat = false

    @Flag(help: "Print the results as one JSON object.")
    var json = false

    @OptionGroup(title: "Generation options (--max-tokens defaults to 64)") var generation: GenerationArguments
    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func validate() throws {
        guard concurrency >= 1 && concurrency <= 1024 else { throw ValidationError("-c must be in 1...1024") }
        guard requests >= 1 else { throw ValidationError("-n must be at least 1") }
    }

    private final class Client {
        let conn: Connection
        var id: RequestID?
        var sentAt = 0.0
        var firstTokenAt: Double?
        init(_ conn: Connection) { self.conn = conn }
    }

    private struct Sample {
        var ttftMS: Double
        var tokensPerSecond: Double
        var generated: Int
    }

    func run() throws {
        var options = generation.options
        if options.maxTokens == nil { options.maxTokens = 64 }
        let body: RequestBody = chat
            ? .chat(ChatRequest(messages: [.init(role: .user, content: prompt)], options: options))
            : .complete(CompleteRequest(prompt: prompt, options: options))

        var clients: [Client] = []
        for _ in 0..<min(concurrency, requests) { clients.append(Client(try connection.open().0)) }
        defer { for c in clients { c.conn.shutdown() } }

        var sent = 0, done = 0
        var samples: [Sample] = []
        var failures: [String: Int] = [:]
        var firstFailure: CtlFailure?
        func start(_ c: Client) throws {
            guard sent < requests else { c.id = nil; return }
            let id = c.conn.makeID()
            c.id = id
            c.sentAt = monotonicSeconds()
            c.firstTokenAt = nil
            sent += 1
            do { try c.conn.send(Request(id: id, body)) } catch { throw CtlFailure.connection(error) }
        }
        let wallStart = monotonicSeconds()
        for c in clients { try start(c) }
        while done < requests {
            var fds = clients.map { pollfd(fd: $0.conn.fileDescriptor, events: Int16(POLLIN), revents: 0) }
            fds.append(pollfd(fd: Interrupt.readFD, events: Int16(POLLIN), revents: 0))
            let timeoutMS = connection.timeout.map { Int32($0 * 1000) } ?? -1
            let rc = poll(&fds, nfds_t(fds.count), timeoutMS)
            if rc < 0 && errno == EINTR { if Interrupt.pending { break } else { continue } }
            if rc == 0 { throw CtlFailure.connection(.timeout(seconds: connection.timeout ?? 0)) }
            if Interrupt.pending { break }
            for (n, c) in clients.enumerated() where fds[n].revents != 0 {
                let messages: [ServerMessage]
                do { messages = try c.conn.drainAfterReadable() } catch { throw CtlFailure.connection(error) }
                for m in messages where m.id == c.id {
                    switch m {
                    case .event(let e):
                        if c.firstTokenAt == nil && e.tokenCount > 0 { c.firstTokenAt = monotonicSeconds() }
                    case .reply(let r):
                        let g: GenerationResult
                        switch r.body {
                        case .complete(let x), .chat(let x): g = x
                        default: throw unexpected(r)
                        }
                        let ttft = c.firstTokenAt.map { ($0 - c.sentAt) * 1000 } ?? g.usage.ttftMS
                        if g.finishReason == .error {
                            failures["finish_reason error", default: 0] += 1
                            firstFailure = firstFailure ?? CtlFailure(ExitStatus.failure, "generation failed: \(g.message ?? "")")
                        } else {
                            samples.append(Sample(ttftMS: ttft, tokensPerSecond: g.usage.tokensPerSecond,
                                                  generated: g.usage.generatedTokens))
                        }
                        done += 1
                        try start(c)
                    case .error(let e):
                        failures[e.code.name, default: 0] += 1
                        firstFailure = firstFailure ?? CtlFailure.server(e)
                        done += 1
                        try start(c)
                    }
                }
            }
        }
        let wall = monotonicSeconds() - wallStart
        if Interrupt.pending { throw CtlFailure(ExitStatus.cancelled, "bench interrupted after \(done) of \(requests) requests") }

        let ttfts = samples.map(\.ttftMS).sorted()
        let rates = samples.map(\.tokensPerSecond).sorted()
        let tokens = samples.reduce(0) { $0 + $1.generated }
        let aggregate = wall > 0 ? Double(tokens) / wall : 0
        if json {
            func pct(_ v: [Double]) -> JSONValue {
                .object(["p50": .double(percentile(v, 50)), "p90": .double(percentile(v, 90)), "p99": .double(percentile(v, 99))])
            }
            Output.jsonLine(.object([
                "clients": .int(Int64(clients.count)), "requests": .int(Int64(requests)),
                "ok": .int(Int64(samples.count)), "failed": .object(failures.mapValues { .int(Int64($0)) }),
                "wall_s": .double(wall), "generated_tokens": .int(Int64(tokens)),
                "ttft_ms": pct(ttfts), "tokens_per_second": pct(rates), "aggregate_tokens_per_second": .double(aggregate),
            ]))
        } else {
            var out = "bench: \(clients.count) client\(clients.count == 1 ? "" : "s"), \(requests) requests, "
                + "max \(options.maxTokens!) tokens, \(chat ? "chat" : "complete") prompt of \(prompt.utf8.count) bytes\n"
            let failed = failures.values.reduce(0, +)
            out += "requests    \(samples.count) ok, \(failed) failed"
            if !failures.isEmpty {
                out += " (" + failures.keys.sorted().map { "\($0) \(failures[$0]!)" }.joined(separator: ", ") + ")"
            }
            out += " in \(fmt(wall, 2)) s\n"
            if !samples.isEmpty {
                out += "ttft ms     p50 \(fmt(percentile(ttfts, 50)))  p90 \(fmt(percentile(ttfts, 90)))  p99 \(fmt(percentile(ttfts, 99)))\n"
                out += "tok/s       p50 \(fmt(percentile(rates, 50)))  p90 \(fmt(percentile(rates, 90)))  p99 \(fmt(percentile(rates, 99)))  (per request)\n"
            }
            out += "aggregate   \(fmt(aggregate)) tok/s (\(tokens) tokens in \(fmt(wall, 2)) s)\n"
            Output.out(out)
        }
        if samples.isEmpty, let firstFailure { throw firstFailure }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(max(rank, 1), sorted.count) - 1]
}
