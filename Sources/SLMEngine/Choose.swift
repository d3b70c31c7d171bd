import SLMKernels
import SLMModel
import SLMConstraint
#if canImport(Glibc)
import Glibc
#endif
import SLMLimits

// `choose`: its result, validation and runner.

/// Scores of `choose` options.
public struct ChooseResult: Sendable, Equatable {
    public struct Option: Sendable, Equatable {
        public var text: String
        /// Σ log p(option tokens | prompt).
        public var logprob: Double
        public var tokenCount: Int
        public var normalizedLogprob: Double { logprob / Double(max(1, tokenCount)) }
    }
    public var options: [Option]
    /// Index of the best option (by normalized log-probability when asked).
    public var best: Int
    public var promptTokens: Int
    public var reusedTokens: Int
    public var ms: Double
}

extension Engine {
    /// Queues a `choose`: the log-probability of each option after `promptIDs`, all
    /// options scored in shared batched passes over one prompt prefill.
    public func submitChoose(promptIDs: [Int32], options: [[Int32]], texts: [String], normalize: Bool,
                             deadline: Double? = nil, owner: UInt32 = 0,
                             completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        guard !promptIDs.isEmpty else { throw EngineError(.badRequest, "the prompt is empty") }
        guard Limits.chooseOptions.contains(Int64(options.count)), options.count == texts.count else {
            throw EngineError(.badRequest, "options must have \(Limits.chooseOptions.rangeText) entries")
        }
        guard options.allSatisfy({ !$0.isEmpty }) else { throw EngineError(.badRequest, "an option is empty") }
        let longest = options.map(\.count).max()!
        guard promptIDs.count + longest <= config.maxContext else {
            throw EngineError(.contextOverflow, "prompt + longest option exceed the context of \(config.maxContext)")
        }
        let need = kvBytes(tokens: promptIDs.count) + options.reduce(0) { $0 + kvBytes(tokens: promptIDs.count + $1.count) }
        guard need <= kvBudget else {
            throw EngineError(.overMemoryBudget, "choose needs \(need) bytes of KV; the budget leaves \(kvBudget)")
        }
        return try enqueue(.choose(promptIDs: promptIDs, options: options, texts: texts, normalize: normalize),
                           deadline: deadline, session: nil, owner: owner, completion: completion)
    }

    func runChoose(_ job: Job, prompt: [Int32], options: [[Int32]], texts: [String], normalize: Bool) {
        let t0 = monotonicSeconds()
        guard let (base, reused) = acquireCache(for: prompt, capacity: prompt.count, owner: job.handle.owner) else {
            return job.fail(.error, "not enough memory for the prompt now; try again")
        }
        defer { retire(base, tokens: prompt, owner: job.handle.owner) }
        let first: [Float]
        do { first = try prefill(prompt, from: reused, into: base) } catch { return job.fail(.error, "\(error)") }
        let lse0 = first.withUnsafeBufferPointer { logSumExp($0) }
        var logprob = options.map { Double(first[Int($0[0])]) - lse0 }

        // Each option continues in its own copy of the prompt KV. Option tokens 0..<k−1
        // are fed (token j's logits score token j+1) in passes shared by all options.
        var caches: [KVCache?] = Array(repeating: nil, count: options.count)
        defer { for c in caches where c != nil { release(c!.bytes) } }
        var next = Array(repeating: 0, count: options.count)  // next option token to feed
        while true {
            if let r = interruption(job) { return job.fail(r) }
            batch.clear()
            var rows: [(option: Int, index: Int)] = []
            for (i, opt) in options.enumerated() {
                while next[i] < opt.count - 1 && rows.count < runner.maxLogits && !batch.isFull {
                    if caches[i] == nil {
                        guard reserve(kvBytes(tokens: prompt.count + opt.count)) else {
                            return job.fail(.error, "not enough memory to score the options now; try again")
                        }
                        let c = KVCache(config: model.config, capacity: prompt.count + opt.count)
                        c.copyPrefix(from: base, count: prompt.count)
                        caches[i] = c
                    }
                    batch.add(opt[next[i]], position: prompt.count + next[i], cache: caches[i]!, logits: true)
                    rows.append((i, next[i]))
                    next[i] += 1
                }
            }
            if rows.isEmpty { break }
            do { try runner.forward(batch) } catch { return job.fail(.error, "\(error)") }
            for (row, r) in rows.enumerated() {
                let l = UnsafeBufferPointer(runner.logits(row: row))
                logprob[r.option] += Double(l[Int(options[r.option][r.index + 1])]) - logSumExp(l)
            }
            batch.clear()
        }
        let scored = options.indices.map {
            ChooseResult.Option(text: texts[$0], logprob: logprob[$0], tokenCount: options[$0].count)
        }
        let key: (ChooseResult.Option) -> Double = { normalize ? $0.normalizedLogprob : $0.logprob }
        let best = scored.indices.max { key(scored[$0]) < key(scored[$1]) || (key(scored[$0]) == key(scored[$1]) && $0 > $1) }!
        job.completion(.choose(ChooseResult(options: scored, best: best, promptTokens: prompt.count, reusedTokens: reused,
                                            ms: (monotonicSeconds() - t0) * 1000)))
    }
}
