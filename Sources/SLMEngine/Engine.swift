import Logging
import SLMKernels
import SLMModel
import SLMTokenizer
import SLMConstraint
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Over ~500 lines on purpose: the scheduler's state (queue, jobs, active sequences, the
// lock-guarded shared state) and what moves a request through it (submit, supersede,
// cancel, admission, the step, finish, shutdown, the prefix cache's reserve/retire) are one
// concurrency protocol, read together. What is not part of it is out: the memory books
// (MemoryLedger), the suggest caches (SuggestCaches), the jobs (Suggest, Choose, Parse) and
// the decode step (DecodeStep in SLMModel).

/// The scheduler: admits requests against the memory budget, advances every active
/// sequence with one batched forward pass per step (continuous batching), and ends
/// requests on completion, cancellation, disconnect or deadline within one step.
///
/// Threads: one engine thread (which is also compute thread 0) plus `threads − 1` pool
/// workers, all created at start. Nothing here creates a thread per request.
public final class Engine: @unchecked Sendable {
    // @unchecked: `shared` is guarded by `lock`; `active` and the run state belong to the
    // engine thread alone.
    public let model: Model
    public let config: EngineConfig
    let logger: Logger
    let runner: Runner
    let batch: Batch
    let lock = ConditionLock()
    var shared = Shared()
    /// Engine thread only.
    var prefixCache: PrefixCache
    var active: [Sequence] = []
    private var prefillCursor = 0
    private var thread: pthread_t?
    private let started = monotonicSeconds()
    let nextID = Atomic<UInt64>(1)
    /// Called from the engine thread at least every `heartbeatInterval` seconds while it
    /// is healthy (idle or stepping); a hung forward pass stops the calls. The daemon
    /// pings the systemd watchdog from here.
    private let heartbeat: (@Sendable () -> Void)?
    private let heartbeatInterval: Double
    /// Every token's bytes, for suggestion text and token healing (built once).
    let tokenBytes: [[UInt8]]
    /// The same bytes flattened: token i is `tokenByteData[tokenByteOffsets[i] ..< tokenByteOffsets[i+1]]`.
    let tokenByteData: [UInt8]
    let tokenByteOffsets: [Int]
    /// Non-control token ids sorted by their bytes: the tokens that start with given bytes
    /// are one contiguous range, found by binary search (token healing, suggest candidates).
    let tokensByBytes: [Int32]
    /// `tokensByBytes` without the tokens that start with a space: the first tokens a
    /// suggestion may start with when nothing of a word is typed (most of the vocabulary,
    /// scanned at such keystrokes: without entries to skip or traits to look up).
    let tokensNotStartingWithSpace: [Int32]
    /// Per token, what the suggest search checks for every child it looks at (see
    /// `TokenTraits`), so a step reads two bytes instead of the token's text.
    let tokenTraits: [TokenTraits]
    /// 1 for the tokens that end a word (do not continue it), 0 for the rest, as floats:
    /// a mask the expansion's log-sum-exp pass multiplies by (word mode's end probability).
    let wordEndMask: [Float]
    /// What the model reads before an empty field with no `context` (a suggest needs at
    /// least one token to predict after): `<|endoftext|>`, the token documents follow in
    /// pretraining, else BOS, else EOS.
    let documentStart: Int32
    /// What `suggest` keeps between keystrokes: memo, scratch, branch caches, their logits
    /// (engine thread).
    var suggestCaches = SuggestCaches()
    /// Most logits rows a suggest pass computes, in place of the kernels' token tile
    /// (`Runner.rowsPerSweep`); tests set it before the first request: 1 to check that
    /// batching the branches' steps never changes a suggestion, a path's tile to count that
    /// path's passes on any machine.
    var suggestRowsPerPassLimit: Int?
    /// Built on the first `parse` (engine thread only): token bytes and trie, ~2 MiB.
    private var vocabulary: ConstraintVocabulary?
    /// Compiled schema and its masks, shared by requests with the same schema text (a
    /// mask cache belongs to one automaton object), a few schemas at most.
    private var schemaCaches: [String: (automaton: SchemaAutomaton, masks: MaskCache)] = [:]
    /// Compiled schemas kept with their masks. Each is at most ~1 MiB compiled
    /// (`JSONSchemaCompiler.maxTrieNodes`) plus up to 512 token masks (vocab/8 bytes each,
    /// 3 MiB with the default model), held outside the KV budget: 4 bound it to ~16 MiB.
    static let maxCachedSchemas = 4

    /// State shared between submitters and the engine thread.
    struct Shared {
        var queue: [Pending] = []
        var jobs: [Job] = []
        /// KV in use, caches and the peak, against the budget (set in `init`).
        var memory = MemoryLedger(capacity: 0)
        /// The live request of each session key.
        var sessions: [String: RequestHandle] = [:]
        var stopping = false
        var finished = false
        var stats = EngineStats()
        var ttft = SampleRing(capacity: 512)
        var rate = SampleRing(capacity: 512)
    }

    struct Pending {
        let handle: RequestHandle
        let request: GenerationRequest
        let sink: @Sendable (EngineEvent) -> Void
        let submitted: Double
        let kvCapacity: Int
    }

    /// One admitted request: owned by the engine thread.
    final class Sequence {
        let handle: RequestHandle
        let request: GenerationRequest
        let sink: @Sendable (EngineEvent) -> Void
        let cache: KVCache
        /// Sampling, ends and text release: the decode step the offline generator shares.
        var step: DecodeStep
        let submitted: Double
        let deadline: Double?
        var fed = 0  // prompt tokens already in the cache
        var pendingToken: Int32?  // sampled, not yet fed
        var firstTokenAt: Double?
        var logitRow = -1

        init(_ p: Pending, cache: KVCache, model: Model, deadline: Double?) {
            handle = p.handle
            request = p.request
            sink = p.sink
            self.cache = cache
            step = DecodeStep(model: model, promptIDs: p.request.promptIDs, options: p.request.options)
            submitted = p.submitted
            self.deadline = deadline
        }

        var prefilling: Bool { fed < request.promptIDs.count }
    }

    /// Bytes of run state an engine with this configuration allocates up front.
    public static func scratchBytes(model: ModelConfig, config: EngineConfig) -> Int {
        Runner.scratchBytes(config: model, maxBatch: maxBatch(config), maxContext: config.maxContext,
                            threads: config.threads, maxLogits: maxLogits(config))
    }

    /// Rows one pass may carry: the decode tokens, a prefill chunk, and room for the
    /// branches of a `suggest` or the option tokens of a `choose`.
    static func maxBatch(_ c: EngineConfig) -> Int { c.prefillChunk + max(c.maxSequences, 16) }
    static func maxLogits(_ c: EngineConfig) -> Int { max(c.maxSequences, 16) }

    /// Bytes of KV cache a request with this many tokens needs.
    public func kvBytes(tokens: Int) -> Int { KVCache.bytes(config: model.config, capacity: tokens) }

    public init(model: Model, config: EngineConfig, logger: Logger,
                heartbeatInterval: Double = 5, heartbeat: (@Sendable () -> Void)? = nil) throws(EngineError) {
        if let problem = config.problem(modelConfig: model.config) {
            throw EngineError(.badRequest, "invalid engine configuration: \(problem)")
        }
        self.model = model
        self.config = config
        self.logger = logger
        self.heartbeat = heartbeat
        self.heartbeatInterval = max(0.05, heartbeatInterval)
        runner = Runner(config: model.config, weights: model.weights, pool: ThreadPool(threads: config.threads),
                        maxBatch: Engine.maxBatch(config), maxContext: config.maxContext,
                        maxLogits: Engine.maxLogits(config))
        batch = Batch(capacity: runner.maxBatch)
        prefixCache = PrefixCache(maxEntries: config.prefixCacheEntries)
        tokenBytes = (0..<model.config.vocabSize).map { model.tokenizer.tokenBytes(Int32($0)) }
        var offsets = [0]
        offsets.reserveCapacity(tokenBytes.count + 1)
        for b in tokenBytes { offsets.append(offsets.last! + b.count) }
        tokenByteOffsets = offsets
        tokenByteData = tokenBytes.flatMap { $0 }
        let tb = tokenBytes
        tokensByBytes = (0..<Int32(model.config.vocabSize)).filter { !model.tokenizer.isControl($0) }
            .sorted { tb[Int($0)].lexicographicallyPrecedes(tb[Int($1)]) || (tb[Int($0)] == tb[Int($1)] && $0 < $1) }
        let tokenizer = model.tokenizer
        tokenTraits = (0..<Int32(model.config.vocabSize)).map {
            TokenTraits(tb[Int($0)], special: tokenizer.isControl($0) || tokenizer.isEOG($0))
        }
        wordEndMask = tokenTraits.map { $0.continuesWord ? 0 : 1 }
        let traits = tokenTraits
        tokensNotStartingWithSpace = tokensByBytes.filter { !traits[Int($0)].startsWithSpace }
        let eot = tokenizer.encode("<|endoftext|>", parseSpecial: true)
        documentStart = eot.count == 1 && tokenizer.isControl(eot[0]) ? eot[0] : (tokenizer.bosID ?? tokenizer.eosID)
        shared.memory = MemoryLedger(capacity: kvBudget)
        shared.stats.memoryBudgetBytes = config.memoryBudgetBytes
        shared.stats.scratchBytes = runner.scratchBytes
        shared.stats.kernelPath = Kernels.path
        shared.stats.threads = config.threads
    }

    /// Runs one forward pass so the first request does not pay for page faults and
    /// one-time setup, then starts the engine thread.
    public func start(warmUp: Bool = true) throws(ModelError) {
        if warmUp {
            let s = Session(runner: runner, capacity: 8)
            try s.feed([0, 1])
            // Also the constraint vocabulary (~2 MiB, seconds on a slow board): built lazily,
            // the first parse paid for it on the engine thread, long enough without a
            // heartbeat to trip a tight systemd watchdog. The engine thread is not running yet.
            _ = constraintVocabulary()
        }
        thread = startThread("engine") { self.loop() }
    }

    // MARK: Submission (any thread)

    /// Queues a generation. Refuses at once when it can never fit the budget or context
    /// (`overMemoryBudget`, `contextOverflow`), when the queue is full (`busy`), or while
    /// shutting down.
    public func submit(_ request: GenerationRequest, sink: @escaping @Sendable (EngineEvent) -> Void) throws(EngineError) -> RequestHandle {
        let prompt = request.promptIDs.count
        let maxTokens = request.options.maxTokens
        func refuse(_ code: EngineError.Code, _ message: String) -> EngineError {
            lock.withLock { shared.stats.refused[code, default: 0] += 1 }
            return EngineError(code, message)
        }
        guard prompt > 0 else { throw refuse(.badRequest, "the prompt is empty") }
        guard maxTokens >= 1, maxTokens <= config.maxTokens else {
            throw refuse(.badRequest, "max_tokens \(maxTokens) is outside 1...\(config.maxTokens)")
        }
        if let bad = request.options.sampling.invalidField { throw refuse(.badRequest, bad) }
        for id in request.promptIDs where id < 0 || Int(id) >= model.config.vocabSize {
            throw refuse(.badRequest, "token id \(id) is outside the vocabulary")
        }
        let capacity = prompt + maxTokens
        guard capacity <= config.maxContext else {
            throw refuse(.contextOverflow, "prompt (\(prompt) tokens) + max_tokens (\(maxTokens)) exceed the context of \(config.maxContext) tokens")
        }
        let need = kvBytes(tokens: capacity)
        let available = kvBudget
        guard need <= available else {
            throw refuse(.overMemoryBudget, "needs \(need) bytes of KV cache; the budget leaves \(available) for all sequences")
        }
        let handle = RequestHandle(id: nextID.add(1, ordering: .relaxed).oldValue, owner: request.owner)
        let pending = Pending(handle: handle, request: request, sink: sink, submitted: monotonicSeconds(), kvCapacity: capacity)
        let refusal: EngineError? = lock.withLock {
            if shared.stopping {
                shared.stats.refused[EngineError.Code.shuttingDown, default: 0] += 1
                return EngineError(.shuttingDown, "the daemon is shutting down")
            }
            guard shared.queue.count < config.maxQueued else {
                shared.stats.refused[EngineError.Code.busy, default: 0] += 1
                return EngineError(.busy, "\(shared.queue.count) requests already queued (max_queued \(config.maxQueued))")
            }
            shared.queue.append(pending)
            shared.stats.queued = shared.queue.count
            lock.broadcast()
            return nil
        }
        if let refusal { throw refusal }
        if let key = request.session { supersede(session: key, with: handle) }
        return handle
    }

    /// Makes `handle` the live request of `key`; the previous one ends with `superseded`
    /// (at once if queued, within one step if running).
    func supersede(session key: String, with handle: RequestHandle) {
        let (previous, removed): (RequestHandle?, Pending?) = lock.withLock {
            let prev = shared.sessions.updateValue(handle, forKey: key)
            guard let prev, prev !== handle else { return (nil, nil) }
            if let i = shared.queue.firstIndex(where: { $0.handle === prev }) {
                let p = shared.queue.remove(at: i)
                shared.stats.queued = shared.queue.count
                shared.stats.finished[FinishReason.superseded, default: 0] += 1
                return (prev, p)
            }
            if let i = shared.jobs.firstIndex(where: { $0.handle === prev }) {
                shared.jobs.remove(at: i).fail(.superseded)
                return (prev, nil)
            }
            return (prev, nil)
        }
        if let removed {
            removed.sink(.finished(Completion(finishReason: .superseded, text: "", generatedIDs: [],
                                              promptTokens: removed.request.promptIDs.count, ttftMs: 0, tokensPerSecond: 0,
                                              totalMs: (monotonicSeconds() - removed.submitted) * 1000)))
        } else if let previous {
            previous.superseded.store(true, ordering: .releasing)
            previous.cancelRequested.store(true, ordering: .releasing)
            lock.withLock { lock.broadcast() }
        }
    }

    /// Ends a request (queued or running) with `cancelled` within one step. Returns false
    /// when it had already finished.
    @discardableResult
    public func cancel(_ handle: RequestHandle) -> Bool {
        let job: Job? = lock.withLock {
            guard let i = shared.jobs.firstIndex(where: { $0.handle === handle }) else { return nil }
            return shared.jobs.remove(at: i)
        }
        if let job {
            job.fail(.cancelled)
            return true
        }
        let removed: Pending? = lock.withLock {
            if let i = shared.queue.firstIndex(where: { $0.handle === handle }) {
                let p = shared.queue.remove(at: i)
                shared.stats.queued = shared.queue.count
                shared.stats.finished[FinishReason.cancelled, default: 0] += 1
                return p
            }
            return nil
        }
        if let removed {
            removed.sink(.finished(Completion(finishReason: .cancelled, text: "", generatedIDs: [],
                                              promptTokens: removed.request.promptIDs.count, ttftMs: 0,
                                              tokensPerSecond: 0, totalMs: (monotonicSeconds() - removed.submitted) * 1000)))
            return true
        }
        let wasRunning = !handle.cancelRequested.exchange(true, ordering: .acquiringAndReleasing)
        lock.withLock { lock.broadcast() }
        return wasRunning
    }

    public func stats() -> EngineStats {
        lock.withLock {
            var s = shared.stats
            s.queued = shared.queue.count
            s.kvBytesInUse = shared.memory.inUse
            s.kvBytesPeak = shared.memory.peak
            s.prefixCacheBytes = shared.memory.cached
            s.ttftMs = Percentiles(shared.ttft.samples)
            s.tokensPerSecond = Percentiles(shared.rate.samples)
            s.uptimeSeconds = monotonicSeconds() - started
            return s
        }
    }

    /// Stops admitting; waits up to `grace` seconds for running and queued work to finish,
    /// then cancels what is left and stops the engine thread.
    public func shutdown(grace: Double) {
        lock.withLock {
            shared.stopping = true
            lock.broadcast()
        }
        let end = monotonicSeconds() + max(0, grace)
        while monotonicSeconds() < end {
            let idle = lock.withLock { shared.queue.isEmpty && shared.jobs.isEmpty && shared.stats.active == 0 }
            if idle { break }
            usleep(10_000)
        }
        lock.withLock {
            shared.finished = true
            lock.broadcast()
        }
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    // MARK: The engine thread

    private func loop() {
        // Every pass from here on runs on this thread: it may stay on its CPU between them.
        runner.pool.holdsCaller = true
        var lastBeat = 0.0
        while true {
            let now = monotonicSeconds()
            if now - lastBeat >= heartbeatInterval {
                heartbeat?()
                lastBeat = now
            }
            // Ended sequences go first, so their KV is in the prefix cache (and their
            // memory free) when the next request is admitted: how a superseding request
            // reuses the prefix of the one it replaced.
            reap()
            let admitted = admit()
            if admitted || !active.isEmpty { TestFault.engineHasWork() }
            if lock.withLock({ shared.finished }) {
                for s in active { finish(s, .cancelled) }
                active.removeAll()
                let (left, jobs) = lock.withLock { () -> ([Pending], [Job]) in
                    let q = shared.queue, j = shared.jobs
                    shared.queue.removeAll()
                    shared.jobs.removeAll()
                    return (q, j)
                }
                for p in left {
                    p.sink(.finished(Completion(finishReason: .cancelled, text: "", generatedIDs: [],
                                                promptTokens: p.request.promptIDs.count, ttftMs: 0, tokensPerSecond: 0, totalMs: 0)))
                }
                for j in jobs { j.fail(.cancelled) }
                return
            }
            // Short jobs (suggest, choose) run to completion between steps: they are a
            // few batched passes, and a keystroke must not wait behind long generations.
            let job: Job? = lock.withLock { shared.jobs.isEmpty ? nil : shared.jobs.removeFirst() }
            if let job {
                TestFault.engineHasWork()
                run(job)
                continue
            }
            if active.isEmpty && !admitted {
                lock.withLock {
                    if shared.queue.isEmpty && shared.jobs.isEmpty && !shared.finished { lock.wait(seconds: heartbeatInterval / 2) }
                }
                continue
            }
            step()
        }
    }

    /// Finishes sequences that were cancelled, superseded or ran out of time.
    private func reap() {
        guard !active.isEmpty else { return }
        let now = monotonicSeconds()
        active.removeAll { s in
            if s.handle.cancelRequested.load(ordering: .acquiring) {
                finish(s, s.handle.superseded.load(ordering: .acquiring) ? .superseded : .cancelled)
                return true
            }
            if let d = s.deadline, now >= d { finish(s, .deadline); return true }
            return false
        }
    }

    func constraintVocabulary() -> ConstraintVocabulary {
        if let v = vocabulary { return v }
        let v = ConstraintVocabulary(tokenizer: model.tokenizer)
        vocabulary = v
        return v
    }

    func compiledSchema(_ schema: String, _ automaton: SchemaAutomaton) -> (automaton: SchemaAutomaton, masks: MaskCache) {
        if let c = schemaCaches[schema] { return c }
        if schemaCaches.count >= Self.maxCachedSchemas { schemaCaches.removeAll() }  // rebuilt on demand
        let c = (automaton, MaskCache(automaton: automaton, vocabulary: constraintVocabulary()))
        schemaCaches[schema] = c
        return c
    }

    // MARK: Memory

    /// Bytes the budget leaves for KV and caches (`MemoryLedger.capacity`); a request whose
    /// KV alone exceeds it is refused at once.
    var kvBudget: Int { config.memoryBudgetBytes - runner.scratchBytes }

    /// Makes room for `bytes` more of KV by evicting prefix-cache entries (never
    /// `keeping`); false when even an empty cache would not make it fit.
    func reserve(_ bytes: Int, keeping: KVCache? = nil) -> Bool {
        while true {
            let reserved: Bool = lock.withLock {
                guard shared.memory.fits(bytes) else { return false }
                shared.memory.reserve(bytes)
                return true
            }
            if reserved { return true }
            // Idle branch caches and their logits go first: they only save an allocation
            // or one pass.
            if let freed = suggestCaches.evictOne() {
                lock.withLock { shared.memory.evict(freed) }
                continue
            }
            guard let victim = prefixCache.evictOne(keeping: keeping) else { return false }
            lock.withLock {
                shared.memory.evict(victim.bytes)
                shared.stats.prefixCacheEntries = prefixCache.entries.count
            }
        }
    }

    /// Reserves `bytes` only if they fit as things stand (no cache is evicted for them).
    func reserveWithoutEvicting(_ bytes: Int) -> Bool {
        lock.withLock {
            guard shared.memory.fits(bytes) else { return false }
            shared.memory.reserve(bytes)
            return true
        }
    }

    func release(_ bytes: Int) {
        lock.withLock {
            shared.memory.release(bytes)
            lock.broadcast()
        }
    }

    /// A KV cache of `capacity` tokens holding as much of `tokens` as the prefix cache
    /// has (at most `tokens.count − 1`, so the caller still feeds one token and gets
    /// logits), or nil when the budget cannot fit it now. Counts as in use.
    func acquireCache(for tokens: [Int32], capacity: Int, owner: UInt32) -> (cache: KVCache, reused: Int)? {
        let match = prefixCache.longestMatch(tokens, owner: owner)
        let reusable = min(match?.length ?? 0, tokens.count - 1)
        if let m = match, reusable > 0 {
            let entry = prefixCache.entries[m.index]
            let bytes = kvBytes(tokens: capacity)
            // A request that reuses only part of the entry (a common system prompt or
            // template, a repeated prompt) copies that part when a new cache fits without
            // evicting anything, and leaves the entry for the next request that shares it.
            // Taken over, the first of several concurrent requests consumed it and the others
            // prefilled the shared tokens again (four clients, 25-token prompts sharing 22:
            // three of them missed, first tokens after 58-79 ms). A request that continues
            // the whole entry (a chat's next turn) still takes it over, without a copy.
            let keepEntry = reusable < entry.tokens.count && reserveWithoutEvicting(bytes)
            if !keepEntry && entry.cache.capacity >= capacity {
                // Take the cached sequence over: no copy at all.
                let e = prefixCache.remove(at: m.index)
                lock.withLock {
                    // Its logits (if any) are dropped: no longer cached.
                    shared.memory.promote(e.cache.bytes, dropping: e.bytes - e.cache.bytes)
                    shared.stats.prefixCacheHits += 1
                    shared.stats.prefixCacheReusedTokens += reusable
                    shared.stats.prefixCacheEntries = prefixCache.entries.count
                }
                e.cache.truncate(to: reusable)
                return (e.cache, reusable)
            }
            // A copy: kept as above, or the entry has no room for this request.
            if keepEntry || reserve(bytes, keeping: entry.cache) {
                let cache = KVCache(config: model.config, capacity: capacity)
                cache.copyPrefix(from: entry.cache, count: reusable)
                lock.withLock {
                    shared.stats.prefixCacheHits += 1
                    shared.stats.prefixCacheReusedTokens += reusable
                }
                return (cache, reusable)
            }
        }
        guard reserve(kvBytes(tokens: capacity)) else { return nil }
        lock.withLock { shared.stats.prefixCacheMisses += 1 }
        return (KVCache(config: model.config, capacity: capacity), 0)
    }

    /// Hands a sequence's KV to the prefix cache (it stops counting as in use).
    func retire(_ cache: KVCache, tokens: [Int32], owner: UInt32, lastLogits: [Float]? = nil) {
        let n = min(cache.count, tokens.count)
        let bytes = cache.bytes
        guard n > 0 else {
            release(bytes)
            return
        }
        cache.truncate(to: n)
        // Logits only describe the full token list.
        let logits = n == tokens.count ? lastLogits : nil
        let dropped = prefixCache.insert(tokens: Array(tokens.prefix(n)), cache: cache, owner: owner, lastLogits: logits)
        let kept = prefixCache.entries.first { $0.cache === cache }
        lock.withLock {
            shared.memory.retire(bytes, kept: kept?.bytes ?? 0, evicted: dropped.reduce(0) { $0 + $1.bytes })
            shared.stats.prefixCacheEntries = prefixCache.entries.count
            lock.broadcast()
        }
    }

    /// Moves queued requests into free slots while the memory budget allows, in order
    /// (first come, first served: a big request is not starved by small ones behind it),
    /// reusing the longest cached prefix of each prompt.
    private func admit() -> Bool {
        var admittedAny = false
        while active.count < config.maxSequences {
            guard let head = lock.withLock({ shared.queue.first }) else { break }
            guard let (cache, reused) = acquireCache(for: head.request.promptIDs, capacity: head.kvCapacity, owner: head.handle.owner) else { break }
            // The lock was released while the cache was prepared: the request may have been
            // cancelled or superseded (and removed from the queue) in the meantime.
            let stillQueued: Bool = lock.withLock {
                guard let i = shared.queue.firstIndex(where: { $0.handle === head.handle }) else { return false }
                shared.queue.remove(at: i)
                shared.stats.queued = shared.queue.count
                shared.stats.active = active.count + 1
                shared.stats.admitted += 1
                return true
            }
            guard stillQueued else {
                retire(cache, tokens: Array(head.request.promptIDs.prefix(reused)), owner: head.handle.owner)
                continue
            }
            let deadline = head.request.deadline
                ?? (config.defaultDeadlineSeconds > 0 ? head.submitted + config.defaultDeadlineSeconds : nil)
            let seq = Sequence(head, cache: cache, model: model, deadline: deadline)
            seq.fed = reused
            active.append(seq)
            admittedAny = true
        }
        return admittedAny
    }

    /// One scheduling step: drop ended sequences, build a batch (one decode token per
    /// decoding sequence, then up to `prefillChunk` prompt tokens shared round-robin),
    /// run it, and sample for every sequence that produced logits.
    private func step() {
        guard !active.isEmpty else { return }

        batch.clear()
        for s in active {
            s.logitRow = -1
            if let t = s.pendingToken {
                s.logitRow = batch.logitCount
                batch.add(t, position: s.cache.count, cache: s.cache, logits: true)
            }
        }
        var budget = config.prefillChunk
        let n = active.count
        for k in 0..<n where budget > 0 {
            let s = active[(prefillCursor + k) % n]
            guard s.prefilling else { continue }
            let take = min(budget, s.request.promptIDs.count - s.fed)
            for i in 0..<take {
                let last = s.fed + i == s.request.promptIDs.count - 1
                if last { s.logitRow = batch.logitCount }
                batch.add(s.request.promptIDs[s.fed + i], position: s.fed + i, cache: s.cache, logits: last)
            }
            s.fed += take
            budget -= take
        }
        prefillCursor += 1
        do {
            try runner.forward(batch)
        } catch {
            // A pass that fails (it validated its input) is a bug: end the requests in it
            // rather than the daemon.
            logger.error("forward pass failed", metadata: ["error": "\(error)"])
            for s in active { finish(s, .error, message: "\(error)") }
            active.removeAll()
            return
        }
        let promptFed = batch.count - active.reduce(0) { $0 + ($1.pendingToken != nil ? 1 : 0) }
        lock.withLock {
            shared.stats.forwardPasses += 1
            shared.stats.promptTokens += promptFed
        }

        let t = monotonicSeconds()
        active.removeAll { s in
            s.pendingToken = nil
            guard s.logitRow >= 0 else { return false }
            let logits = runner.logits(row: s.logitRow)
            if s.firstTokenAt == nil { s.firstTokenAt = t }
            let (id, emit, end) = s.step.accept(logits)
            if !emit.isEmpty, s.request.stream { s.sink(.text(emit, tokens: 1)) }
            if let end { finish(s, end); return true }
            if s.cache.count >= s.cache.capacity {
                finish(s, .length)
                return true
            }
            s.pendingToken = id
            return false
        }
        // Drop the batch's references so a finished sequence's cache is freed before the
        // next admission allocates (the budget counts it as freed already).
        batch.clear()
    }

    /// Sends the final event and releases the sequence's memory.
    private func finish(_ s: Sequence, _ reason: FinishReason, message: String? = nil) {
        let now = monotonicSeconds()
        if reason == .stop || reason == .length {
            // A natural end releases text held back for a possible stop string or a
            // split character; a matched stop string has already cut it.
            let rest = s.step.finishText()
            if !rest.isEmpty {
                if s.request.stream { s.sink(.text(rest, tokens: 0)) }
            }
        }
        let decodeSeconds = s.firstTokenAt.map { now - $0 } ?? 0
        let rate = decodeSeconds > 0 && s.step.generated.count > 1 ? Double(s.step.generated.count - 1) / decodeSeconds : 0
        let ttft = s.firstTokenAt.map { ($0 - s.submitted) * 1000 } ?? 0
        let completion = Completion(finishReason: reason, text: s.step.text, generatedIDs: s.step.generated,
                                    promptTokens: s.request.promptIDs.count, ttftMs: ttft, tokensPerSecond: rate,
                                    totalMs: (now - s.submitted) * 1000, errorMessage: message)
        // The KV of prompt + generated tokens stays cached for the next request that
        // starts the same way (the last sampled token was never fed, so it is not there).
        retire(s.cache, tokens: s.step.history, owner: s.handle.owner)
        lock.withLock {
            if let key = s.request.session, shared.sessions[key] === s.handle { shared.sessions[key] = nil }
            shared.stats.active = max(0, shared.stats.active - 1)
            shared.stats.finished[reason, default: 0] += 1
            shared.stats.generatedTokens += s.step.generated.count
            if s.firstTokenAt != nil { shared.ttft.add(ttft) }
            if rate > 0 { shared.rate.add(rate) }
            lock.broadcast()
        }
        s.sink(.finished(completion))
    }
}
