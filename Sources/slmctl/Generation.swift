// Running one `complete` or `chat` request: stream token deltas to stdout as they arrive,
// print the final result, and turn Ctrl-C into a `cancel` for the request.

import SLMProtocol

/// What a finished generation produced.
struct GenerationOutcome {
    /// All generated text (streamed deltas joined, or the reply's `text`).
    var text: String
    var result: GenerationResult
}

/// How long to wait for the final reply after sending `cancel` on Ctrl-C.
let cancelGraceSeconds = 2.0

func runGeneration(_ connection: Connection, _ body: RequestBody, output: OutputOptions,
                   timeout: Double?) throws -> GenerationOutcome {
    let id = connection.makeID()
    do { try connection.send(Request(id: id, body)) } catch { throw CtlFailure.connection(error) }
    var text = ""
    var endsWithNewline = true
    func show(_ piece: String) {
        guard !piece.isEmpty else { return }
        text += piece
        endsWithNewline = piece.hasSuffix("\n")
        Output.out(piece)
    }
    while true {
        let received: Connection.Received
        do { received = try connection.receive(timeout: timeout) } catch { throw CtlFailure.connection(error) }
        switch received {
        case .interrupted:
            try cancel(connection, id: id, output: output, partialEndsWithNewline: endsWithNewline)
        case .message(.event(let e)) where e.id == id:
            guard e.kind == .token else { continue }  // unknown event kinds are skipped
            if output.json { Output.jsonLine(payload: e.payload()) } else { show(e.text) }
        case .message(.reply(let r)) where r.id == id:
            guard case .complete(let g) = r.body else {
                guard case .chat(let g) = r.body else {
                    throw CtlFailure(ExitStatus.failure, "slmd answered with a '\(r.body.op.rawValue)' reply")
                }
                return try finish(r, g)
            }
            return try finish(r, g)
        case .message(.error(let e)) where e.id == id || e.id == nil:
            if output.json { Output.jsonLine(payload: e.payload()) }
            throw CtlFailure.server(e)
        case .message:
            continue  // frames of other requests (none expected)
        }
    }

    func finish(_ reply: Reply, _ g: GenerationResult) throws -> GenerationOutcome {
        if output.json {
            Output.jsonLine(payload: reply.payload())
        } else {
            if let whole = g.text { show(whole) }
            if Output.stdoutIsTTY && !endsWithNewline { Output.out("\n") }
        }
        if output.showUsage { Output.err(usageLine(g)) }
        switch g.finishReason {
        case .error:
            throw CtlFailure(ExitStatus.failure, "generation failed: \(g.message ?? "no detail from slmd")")
        case .cancelled:
            throw CtlFailure(ExitStatus.cancelled, "generation was cancelled")
        default:
            return GenerationOutcome(text: text, result: g)
        }
    }
}

/// Ctrl-C: send `cancel` for `id`, wait briefly for the request's final frame (so the
/// partial usage is reported), then fail with status 130.
private func cancel(_ connection: Connection, id: RequestID, output: OutputOptions,
                    partialEndsWithNewline: Bool) throws -> Never {
    if !output.json && Output.stdoutIsTTY && !partialEndsWithNewline { Output.out("\n") }
    try? connection.send(Request(id: connection.makeID(), .cancel(CancelRequest(target: id))))
    let deadline = monotonicSeconds() + cancelGraceSeconds
    waiting: while true {
        let left = deadline - monotonicSeconds()
        guard left > 0, let received = try? connection.receive(timeout: left, interruptible: false) else { break }
        guard case .message(let m) = received, m.id == id else { continue }
        switch m {
        case .event(let e):
            if output.json && e.kind == .token { Output.jsonLine(payload: e.payload()) }
        case .reply(let r):
            if output.json { Output.jsonLine(payload: r.payload()) }
            if output.showUsage, case .complete(let g) = r.body { Output.err(usageLine(g)) }
            if output.showUsage, case .chat(let g) = r.body { Output.err(usageLine(g)) }
            break waiting
        case .error(let e):
            if output.json { Output.jsonLine(payload: e.payload()) }
            break waiting
        }
    }
    throw CtlFailure(ExitStatus.cancelled, "cancelled")
}

/// `[stop · 5 prompt + 12 generated tokens · ttft 88.0 ms · 31.5 tok/s · 0.5 s total]`
func usageLine(_ g: GenerationResult) -> String {
    let u = g.usage
    return "[\(g.finishReason.rawValue) · \(u.promptTokens) prompt + \(u.generatedTokens) generated tokens · "
        + "ttft \(fmt(u.ttftMS)) ms · \(fmt(u.tokensPerSecond)) tok/s · \(fmt(u.totalMS / 1000, 2)) s total]"
}
