import SLMTokenizer

/// Why generation ended.
public enum FinishReason: String, Sendable, Codable, CaseIterable {
    /// An end-of-generation token or a stop string.
    case stop
    /// `maxTokens` reached, or the context is full.
    case length
    case cancelled
    case deadline
    case error
    /// A newer request on the same session replaced this one.
    case superseded
}

/// What to generate and when to stop.
public struct GenerationOptions: Sendable, Equatable {
    public var maxTokens: Int
    public var sampling: SamplingParams
    /// Generation stops before the first occurrence of any of these; the text returned
    /// does not include it.
    public var stop: [String]
    /// Also record the K largest raw logits at each step (0: off).
    public var topLogits: Int

    public init(maxTokens: Int = 128, sampling: SamplingParams = SamplingParams(), stop: [String] = [], topLogits: Int = 0) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stop = stop
        self.topLogits = topLogits
    }
}

/// The result of one generation.
public struct GenerationOutput: Sendable {
    public var promptIDs: [Int32]
    /// Generated ids, including a final end-of-generation token if one was produced.
    public var generatedIDs: [Int32] = []
    /// Generated text, without the end-of-generation token's text and cut before a stop string.
    public var text: String = ""
    public var finishReason: FinishReason = .length
    /// For each step (after the prompt, then after each generated token): (id, logit), best first.
    public var topLogits: [[(id: Int32, logit: Float)]] = []
    /// Seconds spent on the prompt (time to first token) and on the generated tokens.
    public var promptSeconds: Double = 0
    public var generateSeconds: Double = 0
}

/// Holds back text that could be the start of a stop string, so streamed deltas never
/// contain (part of) a stop string, and finds the first full match.
public struct StopMatcher: Sendable {
    public let stops: [String]
    private var pending = ""

    public init(stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Adds `text`; returns what is safe to emit now and whether a stop string completed
    /// (in which case the returned text ends just before it).
    public mutating func push(_ text: String) -> (emit: String, stopped: Bool) {
        guard !stops.isEmpty else { return (text, false) }
        pending += text
        // Earliest complete stop string wins.
        var cut: String.Index?
        for s in stops {
            if let r = pending.range(of: s), cut == nil || r.lowerBound < cut! { cut = r.lowerBound }
        }
        if let cut {
            let out = String(pending[..<cut])
            pending = ""
            return (out, true)
        }
        // Keep the longest suffix that is a prefix of some stop string.
        var keep = 0
        for s in stops {
            var n = min(s.count - 1, pending.count)
            while n > keep {
                if pending.hasSuffix(s.prefix(n)) { keep = n; break }
                n -= 1
            }
        }
        let splitAt = pending.index(pending.endIndex, offsetBy: -keep)
        let out = String(pending[..<splitAt])
        pending = String(pending[splitAt...])
        return (out, false)
    }

    /// Text still held back when generation ends without a stop.
    public mutating func flush() -> String {
        defer { pending = "" }
        return pending
    }
}

extension String {
    fileprivate func range(of needle: String) -> Range<String.Index>? {
        guard !needle.isEmpty, needle.count <= count else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}

/// What happens to one sequence after its logits are computed: sample a token, end on an
/// end-of-generation token, a stop string or `max_tokens`, and release text in whole
/// characters that are never part of a stop string. The one decode step of the offline
/// generator (`Generator.run`) and of the daemon's scheduler, so both end and emit by the
/// same rules; the caller owns the forward pass and any limit of its own (cache room).
public struct DecodeStep {
    public let sampler: Sampler
    private var detok: StreamingDetokenizer
    private var stopper: StopMatcher
    private let tokenizer: Tokenizer
    private let maxTokens: Int
    /// Prompt and generated tokens (the repetition penalty's window reads it).
    public private(set) var history: [Int32]
    public private(set) var generated: [Int32] = []
    /// All text released so far.
    public private(set) var text = ""

    public init(model: Model, promptIDs: [Int32], options: GenerationOptions) {
        sampler = Sampler(params: options.sampling, vocabSize: model.config.vocabSize)
        detok = StreamingDetokenizer(tokenizer: model.tokenizer)
        stopper = StopMatcher(stops: options.stop)
        tokenizer = model.tokenizer
        maxTokens = options.maxTokens
        history = promptIDs
        history.reserveCapacity(promptIDs.count + options.maxTokens)
        generated.reserveCapacity(options.maxTokens)
    }

    /// Samples the next token from `logits` (which the sampler may rewrite in place:
    /// penalties, temperature). Returns it, the text it releases (possibly
    /// empty) and why the sequence ends, if it does.
    public mutating func accept(_ logits: UnsafeMutableBufferPointer<Float>) -> (id: Int32, emit: String, end: FinishReason?) {
        let id = sampler.sample(logits, recent: history[...])
        generated.append(id)
        history.append(id)
        if tokenizer.isEOG(id) { return (id, "", .stop) }
        let (emit, stopped) = stopper.push(detok.append(id))
        text += emit
        if stopped { return (id, emit, .stop) }
        return (id, emit, generated.count >= maxTokens ? .length : nil)
    }

    /// At a natural end: the text the detokenizer and the stop matcher still hold (a stop
    /// string that matched has already cut it).
    public mutating func finishText() -> String {
        let tail = stopper.push(detok.finish())
        var rest = tail.emit
        if !tail.stopped { rest += stopper.flush() }
        text += rest
        return rest
    }
}

/// Runs prompt → tokens on one session: the loop the CLI tools use (the daemon's
/// scheduler runs the same `DecodeStep`, interleaved across sequences).
public enum Generator {
    /// Generates after `promptIDs`. `onText` receives each text delta (always whole UTF-8
    /// characters, never part of a stop string) and returns false to cancel.
    public static func run(model: Model, session: Session, promptIDs: [Int32], options: GenerationOptions,
                           now: () -> Double,
                           onText: (String) -> Bool = { _ in true }) throws(ModelError) -> GenerationOutput {
        var out = GenerationOutput(promptIDs: promptIDs)
        guard !promptIDs.isEmpty else { throw ModelError("empty prompt") }
        var step = DecodeStep(model: model, promptIDs: promptIDs, options: options)
        let t0 = now()
        var logits = try session.feed(promptIDs)
        out.promptSeconds = now() - t0
        let t1 = now()

        func recordTop() {
            guard options.topLogits > 0 else { return }
            out.topLogits.append(topK(UnsafeBufferPointer(logits), options.topLogits))
        }
        recordTop()
        if options.maxTokens <= 0 {
            out.finishReason = .length
        } else {
            while true {
                let (id, emit, end) = step.accept(logits)
                if !emit.isEmpty, !onText(emit) { out.finishReason = .cancelled; break }
                if let end { out.finishReason = end; break }
                if session.remaining == 0 { out.finishReason = .length; break }
                logits = try session.feed([id])
                recordTop()
            }
        }
        if out.finishReason != .cancelled && !(out.finishReason == .stop && !model.tokenizer.isEOG(step.generated.last ?? -1)) {
            // Natural end: release what the detokenizer and stop matcher still hold.
            let rest = step.finishText()
            if !rest.isEmpty { _ = onText(rest) }
        }
        out.generatedIDs = step.generated
        out.text = step.text
        out.generateSeconds = now() - t1
        return out
    }

    /// The `k` largest logits, ties to the lower id.
    public static func topK(_ logits: UnsafeBufferPointer<Float>, _ k: Int) -> [(id: Int32, logit: Float)] {
        var best: [(id: Int32, logit: Float)] = []
        best.reserveCapacity(k + 1)
        for i in 0..<logits.count {
            let v = logits[i]
            if best.count == k, let last = best.last, !(v > last.logit) { continue }
            var pos = best.count
            while pos > 0 && v > best[pos - 1].logit { pos -= 1 }
            best.insert((Int32(i), v), at: pos)
            if best.count > k { best.removeLast() }
        }
        return best
    }
}
