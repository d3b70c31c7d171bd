import Logging
import SLMEngine
import SLMKernels
import SLMModel
import Synchronization

/// `slmd bench --sequences`: N concurrent greedy generations through the daemon's own
/// scheduler (`Engine`: admission, continuous batching, one batched forward pass per step,
/// sampling, text release), with no socket or client in the way. What the engine alone
/// can give N clients, to tell an engine limit from a measuring client's.
struct SequencesBench {
    let model: Model
    let threads: Int
    let tokens: Int
    let reps: Int

    /// One figure: `sequences` generations of up to `tokens` tokens each, started together.
    struct Row: Encodable {
        let test: String
        let threads: Int
        let sequences: Int
        /// Generated tokens of all sequences / wall time from submission to the last reply
        /// (prefill included, as a client sees it).
        let tok_s_median: Double
        let tok_s_min: Double
        let tok_s_max: Double
        /// Mean of the sequences' time to first token (the engine's own figure), median over reps.
        let ttft_ms_median: Double
        /// Forward passes per second (steps), median over reps.
        let steps_s_median: Double
    }

    /// Distinct prompts in the shape of scripts/compare-llama's concurrent-clients test, so
    /// neither side gets a cached prefix and greedy decoding runs on for `tokens` tokens.
    static func prompt(_ i: Int, rep: Int) -> String {
        let names = ["Ashford", "Brookvale", "Cinderfell", "Dunmore", "Elmstead", "Fairhaven", "Glenrock", "Highmoor"]
        return "Write the next part of the story. Chapter \(rep + 1): Once upon a time, in a small village called \(names[i % names.count]) \(i / names.count),"
    }

    func run(_ counts: [Int]) throws -> [Row] {
        var config = EngineConfig()
        config.threads = threads
        config.maxSequences = counts.max()!
        config.maxQueued = max(config.maxQueued, counts.max()!)
        config.maxTokens = tokens
        config.maxContext = max(256, tokens + 128)
        config.prefixCacheEntries = 0  // every run prefills its whole prompt, as fresh clients do
        config.defaultDeadlineSeconds = 0
        var logger = Logger(label: "slmd-bench")
        logger.logLevel = .error
        let engine = try Engine(model: model, config: config, logger: logger)
        try engine.start()
        defer { engine.shutdown(grace: 0) }

        var options = GenerationOptions(maxTokens: tokens)
        options.sampling = SamplingParams(temperature: 0)
        var rows: [Row] = []
        for n in counts {
            var rates: [Double] = [], ttfts: [Double] = [], steps: [Double] = []
            for rep in -1..<reps {  // rep -1: warm-up
                let prompts = (0..<n).map { model.tokenizer.encode(Self.prompt($0, rep: rep + 1)) }
                let done = ConditionLock()
                let results = Mutex<[Completion]>([])
                let passes0 = engine.stats().forwardPasses
                let t0 = monotonicSeconds()
                for p in prompts {
                    _ = try engine.submit(GenerationRequest(promptIDs: p, options: options, stream: false)) { event in
                        guard case .finished(let c) = event else { return }
                        done.withLock {
                            results.withLock { $0.append(c) }
                            done.broadcast()
                        }
                    }
                }
                let finished: [Completion] = done.withLock {
                    while results.withLock({ $0.count }) < n { done.wait(seconds: 1) }
                    return results.withLock { $0 }
                }
                let wall = monotonicSeconds() - t0
                if let bad = finished.first(where: { $0.finishReason != .length && $0.finishReason != .stop }) {
                    throw ToolError("a benchmark sequence ended with \(bad.finishReason): \(bad.errorMessage ?? "")")
                }
                guard rep >= 0 else { continue }
                rates.append(Double(finished.reduce(0) { $0 + $1.generatedTokens }) / wall)
                ttfts.append(finished.reduce(0) { $0 + $1.ttftMs } / Double(n))
                steps.append(Double(engine.stats().forwardPasses - passes0) / wall)
            }
            let rate = Spread(rates)
            rows.append(Row(test: "seq\(n)x tg\(tokens)", threads: threads, sequences: n, tok_s_median: rate.median,
                            tok_s_min: rate.min, tok_s_max: rate.max, ttft_ms_median: Spread(ttfts).median,
                            steps_s_median: Spread(steps).median))
        }
        return rows
    }
}
