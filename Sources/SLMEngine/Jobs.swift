import SLMKernels
import SLMModel
import SLMConstraint
#if canImport(Glibc)
import Glibc
#endif
import SLMLimits

/// How a job ended.
public enum JobOutcome: Sendable {
    case suggest(SuggestResult)
    case choose(ChooseResult)
    case parse(ParseResult)
    /// Cancelled, superseded, past its deadline, or failed (with a message).
    case ended(FinishReason, String?)
}

/// A short request the engine thread runs to completion between generation steps.
final class Job: @unchecked Sendable {
    enum Kind {
        case suggest(text: String, SuggestOptions)
        case choose(promptIDs: [Int32], options: [[Int32]], texts: [String], normalize: Bool)
        case parse(promptIDs: [Int32], schema: String, automaton: SchemaAutomaton, maxTokens: Int, sampling: SamplingParams, confidence: Bool,
                   departures: DepartureFilter?, noNumbers: Bool)
    }
    let handle: RequestHandle
    let kind: Kind
    let submitted = monotonicSeconds()
    let deadline: Double?
    let session: String?
    let completion: @Sendable (JobOutcome) -> Void

    init(handle: RequestHandle, kind: Kind, deadline: Double?, session: String?, completion: @escaping @Sendable (JobOutcome) -> Void) {
        self.handle = handle
        self.kind = kind
        self.deadline = deadline
        self.session = session
        self.completion = completion
    }

    func fail(_ reason: FinishReason, _ message: String? = nil) { completion(.ended(reason, message)) }
}

extension Engine {
    // MARK: Queueing

    /// Queues a job for the engine thread (the submitters in Suggest.swift, Choose.swift and
    /// Parse.swift validate first); refusals are counted like `submit`'s.
    func enqueue(_ kind: Job.Kind, deadline: Double?, session: String?, owner: UInt32,
                 completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        let handle = RequestHandle(id: nextID.add(1, ordering: .relaxed).oldValue, owner: owner)
        let job = Job(handle: handle, kind: kind, deadline: deadline, session: session, completion: completion)
        let refusal: EngineError? = lock.withLock {
            if shared.stopping {
                // Counted like submit()'s refusals, so stats add up across ops.
                shared.stats.refused[EngineError.Code.shuttingDown, default: 0] += 1
                return EngineError(.shuttingDown, "the daemon is shutting down")
            }
            guard shared.queue.count + shared.jobs.count < config.maxQueued else {
                shared.stats.refused[EngineError.Code.busy, default: 0] += 1
                return EngineError(.busy, "\(shared.queue.count + shared.jobs.count) requests already queued (max_queued \(config.maxQueued))")
            }
            shared.jobs.append(job)
            lock.broadcast()
            return nil
        }
        if let refusal { throw refusal }
        if let session { supersede(session: session, with: handle) }
        return handle
    }

    // MARK: Execution (engine thread)

    func run(_ job: Job) {
        if job.handle.cancelRequested.load(ordering: .acquiring) {
            return job.fail(job.handle.superseded.load(ordering: .acquiring) ? .superseded : .cancelled)
        }
        switch job.kind {
        case .suggest(let text, let options):
            lock.withLock { shared.stats.suggestRequests += 1 }
            runSuggest(job, text: text, options)
        case .choose(let prompt, let options, let texts, let normalize):
            lock.withLock { shared.stats.chooseRequests += 1 }
            runChoose(job, prompt: prompt, options: options, texts: texts, normalize: normalize)
        case .parse(let prompt, let schema, let automaton, let maxTokens, let sampling, let confidence, let departures, let noNumbers):
            lock.withLock { shared.stats.parseRequests += 1 }
            runParse(job, prompt: prompt, schema: schema, automaton: automaton, maxTokens: maxTokens, sampling: sampling,
                     confidence: confidence, departures: departures, noNumbers: noNumbers)
        }
        lock.withLock {
            if let key = job.session, shared.sessions[key] === job.handle { shared.sessions[key] = nil }
        }
    }

    /// Why the job must stop now, if it must.
    func interruption(_ job: Job) -> FinishReason? {
        if job.handle.cancelRequested.load(ordering: .acquiring) {
            return job.handle.superseded.load(ordering: .acquiring) ? .superseded : .cancelled
        }
        if let d = job.deadline, monotonicSeconds() >= d { return .deadline }
        return nil
    }

    /// Feeds `tokens[from...]` into `cache` (positions continue from `cache.count`);
    /// returns a copy of the logits after the last token.
    func prefill(_ tokens: [Int32], from: Int, into cache: KVCache) throws(ModelError) -> [Float] {
        var i = from
        var last: [Float] = []
        while i < tokens.count {
            batch.clear()
            let end = min(tokens.count, i + batch.capacity)
            for j in i..<end { batch.add(tokens[j], position: j, cache: cache, logits: j == tokens.count - 1) }
            try runner.forward(batch)
            if end == tokens.count { last = Array(runner.logits(row: 0)) }
            i = end
        }
        batch.clear()
        return last
    }

    func logSumExp(_ l: UnsafeBufferPointer<Float>) -> Double { LogitStats.logSumExp(l) }

    /// Indices into `tokensByBytes` of the tokens whose bytes start with `prefix`
    /// (all non-control tokens for an empty prefix).
    func tokens(startingWith prefix: [UInt8]) -> Range<Int> {
        // Compares a token's first prefix.count bytes with the prefix: <0, 0 or >0.
        func order(_ idx: Int) -> Int {
            let i = Int(tokensByBytes[idx])
            let start = tokenByteOffsets[i], len = tokenByteOffsets[i + 1] - start
            for k in 0..<min(len, prefix.count) where tokenByteData[start + k] != prefix[k] {
                return tokenByteData[start + k] < prefix[k] ? -1 : 1
            }
            return len < prefix.count ? -1 : 0
        }
        func firstIndex(where pred: (Int) -> Bool) -> Int {
            var lo = 0, hi = tokensByBytes.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if pred(mid) { hi = mid } else { lo = mid + 1 }
            }
            return lo
        }
        let lo = firstIndex { order($0) >= 0 }
        let hi = firstIndex { order($0) > 0 }
        return lo..<max(lo, hi)
    }

}

@inline(__always) func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

/// Words in UTF-8 bytes: runs of non-space.
func wordCount(_ bytes: [UInt8]) -> Int {
    var n = 0
    var inWord = false
    for b in bytes {
        if isSpace(b) { inWord = false } else if !inWord { inWord = true; n += 1 }
    }
    return n
}

/// Decodes the longest valid UTF-8 prefix (a suggestion may stop inside a character).
func validUTF8Prefix(_ bytes: [UInt8]) -> String {
    var end = bytes.count
    while end > 0 {
        if let s = String(validating: bytes[0..<end], as: UTF8.self) { return s }
        end -= 1
    }
    return ""
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
