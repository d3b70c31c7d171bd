#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import SLMProtocol
import SLMLimits

struct Suggest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Suggest short continuations of a prefix, as a device UI would.",
        discussion: """
            Prints the suggestions, most probable first, one per line as the full text \
            (prefix + suggestion) with its probability given the prefix. A prefix ending inside \
            a word is continued (token healing); an empty prefix ("") is the start of a field \
            and gets first words, after --context when given. --mode word suggests the rest of \
            the current word (the next word after a space) instead of a phrase. \
            --json prints {"suggestions": [{"text": …, "prob": …}, …]}. \
            --interactive (on a terminal) updates the suggestions as you type and shows the \
            time each keystroke took; Enter or Ctrl-D leaves.
            """)

    @Argument(help: ArgumentHelp("Text typed so far, \"\" for an empty field (not needed with --interactive).", valueName: "prefix"))
    var prefix: String?

    @Option(name: .short, help: ArgumentHelp("Suggestions wanted (\(Limits.suggestN.rangeText))."))
    var n = Int(Limits.suggestN.defaultValue!)

    @Option(help: ArgumentHelp("Most tokens per suggestion (\(Limits.suggestMaxTokens.rangeText))."))
    var maxTokens = Int(Limits.suggestMaxTokens.defaultValue!)

    @Option(help: ArgumentHelp("Most words per suggestion (\(Limits.suggestMaxWords.rangeText); 0: no limit)."))
    var maxWords = Int(Limits.suggestMaxWords.defaultValue!)

    @Flag(help: "Do not stop suggestions at the end of a sentence.")
    var noSentenceStop = false

    @Option(help: "phrase: short phrases; word: the rest of the current word, or the next word after a space.")
    var mode: String = "phrase"

    @Option(help: ArgumentHelp("Least probability (\(Limits.suggestMinProb.rangeText)) of a suggestion given the prefix (default: the server's, 1e-6)."))
    var minProb: Double?

    @Option(help: "Text before the field that was not typed in it (a label, earlier fields).")
    var context: String?

    @Option(help: "A UI session key: a newer request on it supersedes the previous one and reuses its prefix.")
    var session: String?

    @Flag(help: "Update suggestions as you type (needs a terminal).")
    var interactive = false

    @Flag(help: "Print one JSON object.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func validate() throws {
        guard Limits.suggestN.contains(Int64(n)) else { throw ValidationError("-n must be in \(Limits.suggestN.rangeText)") }
        guard Limits.suggestMaxTokens.contains(Int64(maxTokens)) else {
            throw ValidationError("--max-tokens must be in \(Limits.suggestMaxTokens.rangeText)")
        }
        guard Limits.suggestMaxWords.contains(Int64(maxWords)) else {
            throw ValidationError("--max-words must be in \(Limits.suggestMaxWords.rangeText)")
        }
        guard SuggestRequest.Mode(rawValue: mode) != nil else { throw ValidationError("--mode must be phrase or word") }
        if let p = minProb, !Limits.suggestMinProb.contains(p) {
            throw ValidationError("--min-prob must be in \(Limits.suggestMinProb.rangeText)")
        }
        if !interactive && prefix == nil { throw ValidationError("give a prefix (\"\" for an empty field), or use --interactive") }
    }

    func request(_ text: String, session: String?) -> RequestBody {
        .suggest(SuggestRequest(prefix: text, n: n, maxTokens: maxTokens, maxWords: maxWords,
                                stopAtSentence: !noSentenceStop, mode: SuggestRequest.Mode(rawValue: mode) ?? .phrase,
                                minProb: minProb, context: context, session: session))
    }

    func run() throws {
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        if interactive { return try runInteractive(conn) }
        let text = prefix!
        let reply = try quickCall(conn, request(text, session: session), connection: connection, json: json)
        guard case .suggest(let r) = reply.body else { throw unexpected(reply) }
        if json {
            Output.jsonLine(.object(["suggestions": .array(r.suggestions.map {
                .object(["text": .string($0.text), "prob": .double($0.prob)])
            })]))
        } else {
            for s in r.suggestions { Output.out("\(text)\(s.text)\t\(formatProbability(s.prob))\n") }
        }
    }

    /// Raw-mode line editor: every keystroke sends a suggest on one session, so the
    /// daemon supersedes the previous request and reuses the cached prefix.
    private func runInteractive(_ conn: Connection) throws {
        guard Output.stdinIsTTY && Output.stdoutIsTTY else { throw ValidationError("--interactive needs a terminal") }
        var saved = termios()
        tcgetattr(0, &saved)
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        tcsetattr(0, TCSANOW, &raw)
        defer { tcsetattr(0, TCSANOW, &saved); Output.out("\n") }
        var text = prefix ?? ""
        let key = session ?? "slmctl-interactive-\(getpid())"
        Output.out("type; suggestions update per keystroke (Enter to quit)\n")
        while true {
            let t0 = monotonicMilliseconds()
            var line = "\r\u{1B}[K> \(text)"
            if let reply = try? quickCall(conn, request(text, session: key), connection: connection, json: false),
               case .suggest(let r) = reply.body {
                let shown = r.suggestions.map { "[\($0.text)]" }.joined(separator: " ")
                line += "   \u{1B}[2m\(shown)  \(Int(monotonicMilliseconds() - t0)) ms, \(r.reusedTokens)/\(r.promptTokens) cached\u{1B}[0m"
            }
            Output.out(line)
            var c: UInt8 = 0
            guard read(0, &c, 1) == 1 else { return }
            switch c {
            case 0x0A, 0x0D, 0x04: return
            case 0x7F, 0x08: if !text.isEmpty { text.removeLast() }
            case 0x09:  // Tab accepts the first suggestion
                if let reply = try? quickCall(conn, request(text, session: key), connection: connection, json: false),
                   case .suggest(let r) = reply.body, let first = r.suggestions.first { text += first.text }
            default:
                if c >= 0x20 { text.unicodeScalars.append(Unicode.Scalar(c)) }
            }
        }
    }
}

struct Choose: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score options as continuations of a prompt and print the most likely.",
        discussion: """
            For sentiment, intent routing or yes/no decisions on the device. Options are scored \
            as the model would continue the prompt, so give them a leading space when they \
            follow a word (" positive"). --json prints {"best": …, "options": [{"text": …, "logprob": …}, …]}.
            """)

    @Option(help: "The context the options continue.")
    var prompt: String

    @Option(name: .customLong("option"), help: ArgumentHelp("An option (repeat for each, \(Limits.chooseOptions.rangeText))."))
    var options: [String] = []

    @Flag(help: "Rank by log-probability per token instead of the total.")
    var normalize = false

    @Flag(help: "Print one JSON object.")
    var json = false

    @OptionGroup(title: "Connection options") var connection: ConnectionOptions

    func validate() throws {
        guard Limits.chooseOptions.contains(Int64(options.count)) else {
            throw ValidationError("give \(Limits.chooseOptions.rangeText) --option values")
        }
        if options.contains(where: \.isEmpty) { throw ValidationError("options must not be empty") }
    }

    func run() throws {
        let (conn, _) = try connection.open()
        defer { conn.shutdown() }
        let reply = try quickCall(conn, .choose(ChooseRequest(prompt: prompt, options: options, normalize: normalize)),
                                  connection: connection, json: json)
        guard case .choose(let r) = reply.body else { throw unexpected(reply) }
        if json {
            Output.jsonLine(.object(["best": .string(r.best), "options": .array(r.options.map {
                .object(["text": .string($0.text), "logprob": .double($0.logprob), "normalized_logprob": .double($0.normalizedLogprob)])
            })]))
        } else {
            for (i, o) in r.options.enumerated() {
                Output.out("\(i == r.bestIndex ? "*" : " ") \(o.text)\tlogprob \(formatFixed(o.logprob, 3))\n")
            }
        }
    }
}

func monotonicMilliseconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
}

func formatFixed(_ x: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let v = (abs(x) * scale).rounded()
    let whole = Int(v / scale)
    var frac = String(Int(v) % Int(scale))
    while frac.count < digits { frac = "0" + frac }
    return (x < 0 ? "-" : "") + "\(whole)." + frac
}

/// 4 decimals, or scientific notation (2.09e-05) for small probabilities.
func formatProbability(_ p: Double) -> String {
    guard p > 0, p < 0.001 else { return formatFixed(p, 4) }
    var e = 0
    var m = p
    while m < 1 { m *= 10; e += 1 }
    return formatFixed(m, 2) + "e-" + (e < 10 ? "0" : "") + String(e)
}
