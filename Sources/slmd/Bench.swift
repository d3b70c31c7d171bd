import ArgumentParser
import SLMKernels
import SLMModel

/// Throughput benchmark in the shape of llama-bench, so the figures compare side by side.
/// A benchmark, not a test: it asserts nothing and belongs in release builds only.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt processing (pp) and generation (tg) speed, time to first token and memory.",
        discussion: """
            ppN: one fresh N-token prompt processed as a batch. tgN: N tokens decoded one at \
            a time from an empty context. ttft16: a 16-token prompt to the first sampled token. \
            seqNx tgM (with --sequences): N greedy generations of M tokens submitted together \
            to the daemon's scheduler, aggregate tok/s from submission to the last reply. \
            Each figure is the median (and min–max) over --reps runs after one warm-up. \
            Rows at more than one thread note the share of passes the parallelism governor \
            ran on one thread (a core shared with another process).
            """)

    @Option(name: .long, help: "GGUF model file (default: the fetched default model).")
    var model: String?

    @Option(name: .long, help: "mapped (weights used in place) or repacked (copied into the kernels' layout).")
    var weightsLayout: WeightsLayout = .repacked

    @Option(name: .long, help: "Directory for the repacked weights' cache file (default: $SLMD_CACHE_DIR; none: anonymous memory).")
    var repackCacheDir: String?

    @Option(name: .long, help: "Kernel path: auto (the best this CPU supports), avx512vnni, avx2, neon-dotprod, neon or portable.")
    var kernels: KernelChoice = .auto

    @Option(name: .long, help: "Comma-separated thread counts.")
    var threads = "1,2"

    @Option(name: .long, help: "Comma-separated prompt sizes.")
    var pp = "16,128,512"

    @Option(name: .long, help: "Comma-separated generation lengths.")
    var tg = "32,128"

    @Option(name: .long, help: "Comma-separated counts of concurrent sequences run through the scheduler (e.g. 1,2,4; default none).")
    var sequences = ""

    @Option(name: .long, help: "Tokens each --sequences generation decodes.")
    var sequenceTokens = 64

    @Option(name: .long, help: "Repetitions per test (median reported).")
    var reps = 5

    @Flag(name: .long, help: "One JSON object per line.")
    var json = false

    @Flag(name: .long, help: "Also measure every thread count above 1 with all threads on every pass (no per-pass governor): rows marked 'fixed'.")
    var fixedThreads = false

    func parseList(_ s: String, _ name: String) throws -> [Int] {
        let v = s.split(separator: ",").map { Int($0.filter { $0 != " " }) }
        guard !v.isEmpty, v.allSatisfy({ ($0 ?? 0) > 0 }) else { throw ValidationError("--\(name) takes positive integers like 1,2") }
        return v.map { $0! }
    }

    struct Row: Encodable {
        let test: String
        let threads: Int
        /// All threads on every pass (the governor off).
        let fixed: Bool
        let tok_s_median: Double
        let tok_s_min: Double
        let tok_s_max: Double
        /// Share of the measured passes the governor ran on one thread (nil: 1 thread or
        /// fixed): shows what it chose on a shared core.
        let solo_share: Double?
        /// Chunks the caller took over from a descheduled worker, the share of the time the
        /// caller waited on workers, and the share it was itself descheduled during parallel
        /// passes (nil: 1 thread): what a shared core cost.
        let takeovers: Int?
        let stalled_share: Double?
        let caller_descheduled_share: Double?
    }
    struct TTFT: Encodable { let test: String; let threads: Int; let fixed: Bool; let ms_median: Double; let ms_min: Double; let ms_max: Double }
    struct Memory: Encodable { let rss_anon_mb: Double; let rss_file_mb: Double; let peak_rss_mb: Double }
    struct Info: Encodable {
        let model: String; let kernel_path: String; let weights_mb: Double; let weights_layout: String; let load_ms: Double
        let reps: Int
    }

    func run() throws {
        let threadList = try parseList(threads, "threads")
        let ppList = try parseList(pp, "pp")
        let tgList = try parseList(tg, "tg")
        let seqList = sequences.isEmpty ? [] : try parseList(sequences, "sequences")
        guard reps >= 1 else { throw ValidationError("--reps must be >= 1") }
        guard (1...256).contains(sequenceTokens) else { throw ValidationError("--sequence-tokens must be in 1...256") }
        guard seqList.allSatisfy({ $0 <= 64 }) else { throw ValidationError("--sequences takes counts up to 64") }
        let opts = try ModelOptions.parse((model.map { ["--model", $0] } ?? []) + ["--weights-layout", weightsLayout.rawValue]
                                          + (repackCacheDir.map { ["--repack-cache-dir", $0] } ?? [])
                                          + ["--kernels", kernels.rawValue])
        let tLoad = monotonicSeconds()
        let m = try opts.loadModel()
        m.prefetch()
        let loadMs = (monotonicSeconds() - tLoad) * 1000
        let maxPP = ppList.max()!, maxTG = tgList.max()!
        let ctx = max(maxPP, maxTG + 1, 17)
        let info = Info(model: opts.modelPath, kernel_path: Kernels.path,
                        weights_mb: Double(m.weightBytes) / 1e6,
                        weights_layout: m.weights.layout.rawValue + (m.weights.repackCachePath.map {
                            " cache \($0)" + (m.weights.repackCacheHit ? " reused" : " written")
                        } ?? ""),
                        load_ms: loadMs, reps: reps)
        if json { try printJSON(info) } else {
            print("model \(info.model) (\(fmt(info.weights_mb)) MB weights, \(info.weights_layout), loaded in \(fmt(loadMs)) ms), kernels \(info.kernel_path), \(reps) reps")
            print("| test   | threads | tok/s median | min–max         |")
            print("|--------|---------|--------------|-----------------|")
        }
        var rng = SeededRNG(seed: 42)
        let vocab = UInt64(m.config.vocabSize)
        // At least the 16 tokens ttft16 feeds, whatever --pp asks.
        let prompt: [Int32] = (0..<max(maxPP, 16)).map { _ in Int32(rng.next() % vocab) }

        let runs = threadList.flatMap { t in fixedThreads && t > 1 ? [(t, false), (t, true)] : [(t, false)] }
        for (t, fixed) in runs {
            let runner = makeRunner(m, threads: t, maxBatch: min(max(maxPP, 16), 512), maxContext: ctx)
            runner.adaptsThreads = !fixed
            let label = fixed ? "\(t) fixed" : String(t)
            let session = Session(runner: runner, capacity: ctx)
            func measure(_ body: () throws -> Void) rethrows -> [Double] {
                try body()  // warm-up
                var times: [Double] = []
                for _ in 0..<reps {
                    let t0 = monotonicSeconds()
                    try body()
                    times.append(monotonicSeconds() - t0)
                }
                return times
            }
            // The governor's pass counts when a test starts (warm-up included in the test).
            var passesBefore = (solo: 0, parallel: 0, takeovers: 0, stalled: 0.0, off: 0.0)
            func startTest() {
                passesBefore = (runner.governor.soloPasses, runner.governor.parallelPasses, runner.pool.takeovers,
                                runner.pool.stallSeconds, runner.pool.callerDescheduledSeconds)
            }
            func report(_ name: String, tokens: Int, _ times: [Double]) throws {
                let rates = Spread(times.map { Double(tokens) / $0 })
                let solo = runner.governor.soloPasses - passesBefore.solo
                let all = solo + runner.governor.parallelPasses - passesBefore.parallel
                let share: Double? = t > 1 && !fixed && all > 0 ? Double(solo) / Double(all) : nil
                let takeovers = t > 1 ? runner.pool.takeovers - passesBefore.takeovers : nil
                let stalled = t > 1 ? (runner.pool.stallSeconds - passesBefore.stalled) / times.reduce(0, +) : nil
                let off = t > 1 ? (runner.pool.callerDescheduledSeconds - passesBefore.off) / times.reduce(0, +) : nil
                let row = Row(test: name, threads: t, fixed: fixed, tok_s_median: rates.median, tok_s_min: rates.min,
                              tok_s_max: rates.max, solo_share: share, takeovers: takeovers, stalled_share: stalled,
                              caller_descheduled_share: off)
                if json { try printJSON(row) } else {
                    var note = share.map { $0 > 0 ? " solo \(fmt($0 * 100))% of passes" : "" } ?? ""
                    if let stalled, stalled >= 0.005 { note += " stalled \(fmt(stalled * 100))%" }
                    if let takeovers, takeovers > 0 { note += " \(takeovers) chunks taken over" }
                    if let off, off >= 0.005 { note += " caller descheduled \(fmt(off * 100))%" }
                    print("| \(pad(name, 6)) | \(pad(label, 7)) | \(pad(fmt(row.tok_s_median), 12)) | \(pad(fmt(row.tok_s_min) + "–" + fmt(row.tok_s_max), 15)) |\(note)")
                }
            }
            for n in ppList {
                startTest()
                let times = try measure {
                    session.rewind(to: 0)
                    try session.feed(Array(prompt.prefix(n)))
                }
                try report("pp\(n)", tokens: n, times)
            }
            for n in tgList {
                startTest()
                let times = try measure {
                    session.rewind(to: 0)
                    var tok = prompt[0]
                    for _ in 0..<n {
                        let logits = try session.feed([tok])
                        tok = Sampler.argmax(UnsafeBufferPointer(logits))
                    }
                }
                try report("tg\(n)", tokens: n, times)
            }
            let ttft = try measure {
                session.rewind(to: 0)
                let logits = try session.feed(Array(prompt.prefix(16)))
                _ = Sampler.argmax(UnsafeBufferPointer(logits))
            }.map { $0 * 1000 }
            let ms = Spread(ttft)
            let tt = TTFT(test: "ttft16", threads: t, fixed: fixed, ms_median: ms.median, ms_min: ms.min, ms_max: ms.max)
            if json { try printJSON(tt) } else {
                print("| ttft16 | \(pad(label, 7)) | \(pad(fmt(tt.ms_median) + " ms", 12)) | \(pad(fmt(tt.ms_min) + "–" + fmt(tt.ms_max) + " ms", 15)) |")
            }
            if !seqList.isEmpty {
                let bench = SequencesBench(model: m, threads: t, tokens: sequenceTokens, reps: reps)
                for row in try bench.run(seqList) {
                    if json { try printJSON(row) } else {
                        print("| \(row.test) | \(pad(String(t), 7)) | \(pad(fmt(row.tok_s_median), 12)) | \(pad(fmt(row.tok_s_min) + "–" + fmt(row.tok_s_max), 15)) | ttft \(fmt(row.ttft_ms_median)) ms, \(fmt(row.steps_s_median)) steps/s")
                    }
                }
            }
        }
        let mem = MemoryUsage.current()
        let mm = Memory(rss_anon_mb: Double(mem.rssAnonKB) / 1024, rss_file_mb: Double(mem.rssFileKB) / 1024,
                        peak_rss_mb: Double(mem.hwmKB) / 1024)
        if json { try printJSON(mm) } else {
            print("RssAnon \(fmt(mm.rss_anon_mb)) MiB, RssFile \(fmt(mm.rss_file_mb)) MiB, peak RSS \(fmt(mm.peak_rss_mb)) MiB (context \(ctx))")
        }
    }
}

/// Median and range of a test's samples: the figures every `slmd bench` row reports.
struct Spread {
    let median: Double, min: Double, max: Double
    init(_ samples: [Double]) {
        let s = samples.sorted(), n = s.count
        median = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
        min = s[0]
        max = s[n - 1]
    }
}

/// Fixed one-decimal formatting without Foundation's String(format:).
func fmt(_ x: Double) -> String {
    guard x.isFinite else { return "\(x)" }
    let tenths = Int((abs(x) * 10).rounded())
    return (x < 0 ? "-" : "") + "\(tenths / 10).\(tenths % 10)"
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
