import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed set of persistent compute threads that run one parallel region at a time,
/// each region a list of chunks that the threads claim: each thread first its own segment of
/// consecutive chunks, front to back, then what is left of the others', from their backs.
///
/// The calling thread is thread 0, so `threadCount` threads compute and only
/// `threadCount - 1` are ever created, all at init: none per request or per token.
///
/// Why chunks are claimed instead of handed out: on a 2-core board the daemon shares its
/// cores with the UI it serves. With fixed slices, a worker the kernel has descheduled holds
/// its slice until it runs again, and the step waits for it (measured on Zen 1 with a niced
/// hog on one core: 2 threads decoded slower than 1). Here the caller opens a region and
/// starts claiming chunks at once; a worker joins only if it arrives while the region is
/// open, and the caller waits only for chunks already claimed. A worker that never got the
/// CPU costs nothing; one preempted mid-chunk costs that chunk's wait, unless the region is
/// recoverable (`parallelFor(recoverable:)`, the matrix products of prompt-sized passes):
/// then the caller computes that chunk itself.
///
/// Why each thread has a segment instead of all taking the next chunk in turn: chunks are
/// ranges of rows, so a segment is one contiguous run of weights, which each core's hardware
/// prefetcher follows from chunk to chunk; taken in turn, every thread skipped the chunks the
/// others took and restarted its stream at each claim. Measured on x86-avx2 (2 threads, all
/// the model's matmuls in a C harness, alternating, medians): 1-token passes -9%, 4-token
/// passes -16%, 16-token passes -8% of the time; the daemon's decode +9%. Thieves take from a
/// segment's back, where its smallest chunks are (see `chunk`), so a region still ends on
/// small chunks and the owner's stream is cut only at its end.
///
/// Which thread computes a chunk never changes how it is computed: callers give each chunk
/// a fixed range of rows, and per-thread scratch is indexed by the `thread` argument.
///
/// Workers wait for the next region by spinning briefly, then yielding, then sleeping on a
/// condition variable. Pure spinning burns the core another process needs; pure sleeping
/// costs a futex round trip per region, ~150 regions a token.
public final class ThreadPool: @unchecked Sendable {
    /// Most threads that execute a region (the caller included): the configured cap.
    public let threadCount: Int

    /// Chunks per thread the first half of a tapering region is cut into (see `chunk`):
    /// enough that a late or preempted thread leaves the rest to others, few enough that
    /// claiming (one atomic add each) stays negligible beside a chunk's work.
    public static let chunksPerThread = 2
    /// Chunks per thread of a region that does not taper (passes of under 8 tokens: decode
    /// steps): a late thread's unclaimed chunk is still taken by the others. It was 4 until
    /// 2026-11-29, then 2 (x86-avx2, 2 threads, 12 alternating rounds, medians of per-round
    /// ratios: 4-token passes +3.9%, tg64 +2.0%, 2 and 4 sequences +3.6% / +2.7%), then 1:
    /// 8 alternating rounds against 2, tg64 +4.1%, 4 sequences +2.8%, pp4 +1.9% (pp16 and
    /// ttft16, tapered, 1.00); one pass alternating 1 and 2 in the same process, phases of
    /// 4-token passes timed: matmul regions 3-6% faster, the pass 2.1%. Beside a `nice -n
    /// 5` hog, tg32 2t / 1t 0.90-1.07 (median 1.01) against 0.92-1.04 (1.00), eight
    /// alternating rounds.
    public static let untaperedChunksPerThread = 1

    // Workers hold only `shared`, never the pool: a worker calling a method on the pool
    // itself would keep it alive (and its threads running) forever.
    private let shared: Shared
    private var threads: [pthread_t] = []
    private let runLock = Mutex<Void>(())

    /// When set, regions run on the calling thread alone, as in a 1-thread pool: `parallelFor`
    /// gives its body the whole range at once (results do not change: every body computes
    /// each row the same in any chunk), `run` each chunk in turn. Set between regions by the
    /// pool's one caller (see `ParallelismGovernor`); idle workers then fall asleep instead
    /// of spinning.
    public var runsSolo = false {
        didSet { shared.parked.store(runsSolo, ordering: .relaxed) }
    }

    /// Seconds the caller has spent, after running out of chunks to claim, waiting for workers
    /// still computing theirs: near zero on idle cores, large when the kernel deschedules a
    /// worker in the middle of a chunk (a core shared with another process).
    public private(set) var stallSeconds = 0.0

    /// The CPU of each thread (index 0: whichever thread drives a pass, see
    /// `pinningCaller`), when the pool uses every CPU its process may run on; else empty and
    /// the threads float. See `CPUAffinity`.
    public private(set) var pinnedCPUs: [Int] = []
    /// The caller's own mask, saved while `pinningCaller` runs (allocated once: no
    /// allocation per pass).
    private let savedMask = UnsafeMutableRawPointer.allocate(byteCount: CPUAffinity.maskBytes, alignment: 8)

    /// Runs `body` (one forward pass) with the calling thread on the caller's CPU of
    /// `pinnedCPUs` (the one no worker holds; see `rotations`) when the pool pins, and
    /// restores its own mask after (unless `holdsCaller`): a thread that drives passes now
    /// and then (a test, a bench) is not left pinned. Times the pass (`lastPassSeconds`,
    /// `lastPassDescheduledSeconds`: the parallelism governor reads them too). Up to five
    /// system calls per pass (the mask read and two writes, two reads of the thread's CPU
    /// clock: ~2 µs beside a 3 ms decode step; a held caller skips the mask calls unless the
    /// pool moved round). One caller at a time (the saved mask and the rotation state are
    /// the pool's), as the runner's one pass at a time.
    public func pinningCaller<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let me = pthread_self()
        let held = heldThread.map { pthread_equal($0, me) != 0 } ?? false
        let pinned = !pinnedCPUs.isEmpty && (held || CPUAffinity.readMask(into: savedMask))
        if pinned {
            let cpu = pinnedCPUs[shared.rotation.load(ordering: .relaxed) % pinnedCPUs.count]
            if !held || cpu != heldCPU { CPUAffinity.pinCurrentThread(to: cpu) }
            if held || heldThread == nil { heldCPU = cpu }
        }
        let start = monotonicSeconds(), cpuStart = threadCPUSeconds()
        defer {
            if pinned && !held {
                // Held from now on (its own mask kept in heldMask), unless holding is off or
                // another thread is held already: then it gets its own mask back.
                if holdsCaller && heldThread == nil {
                    heldMask.copyMemory(from: savedMask, byteCount: CPUAffinity.maskBytes)
                    heldThread = me
                } else {
                    CPUAffinity.writeMask(savedMask)
                }
            }
            let seconds = monotonicSeconds() - start
            let off = max(0, seconds - (threadCPUSeconds() - cpuStart))
            lastPassSeconds = seconds
            lastPassDescheduledSeconds = off
            callerDescheduledSeconds += off
            if pinned { noteCallerDescheduled(share: seconds > 0 ? min(1, off / seconds) : 0) }
        }
        return try body()
    }

    /// Set by a caller that drives every pass of this pool from one thread of its own (the
    /// engine's): `pinningCaller` then leaves that thread on its CPU between passes instead
    /// of giving it its own mask back. Why: woken for the next request, an unpinned caller
    /// was put on the idle CPU (waking an idle vCPU: ~0.15-0.19 ms) and then moved back to
    /// its pinned one (~0.1 ms) before the pass could start (perf sched, a 16-token prompt
    /// after 100 ms idle, Firecracker VM); held, it wakes where the pass runs. A solo pass
    /// first calls `releaseCaller`, so it still runs wherever the kernel finds room. One
    /// thread at most is held (the first to run a pass with this set); any other caller
    /// gets its mask back after each pass, as without it.
    public var holdsCaller = false
    /// The held thread (`holdsCaller`), its CPU, and its own mask from before it was held.
    private var heldThread: pthread_t?
    private var heldCPU = -1
    private let heldMask = UnsafeMutableRawPointer.allocate(byteCount: CPUAffinity.maskBytes, alignment: 8)

    /// Gives the held thread its own mask back (`holdsCaller`): before a solo pass. A no-op
    /// unless the calling thread is the held one.
    public func releaseCaller() {
        guard let t = heldThread, pthread_equal(t, pthread_self()) != 0 else { return }
        CPUAffinity.writeMask(heldMask)
        heldThread = nil
    }

    /// Wall-clock seconds of the last `pinningCaller` pass, and how many of them its calling
    /// thread spent descheduled.
    public private(set) var lastPassSeconds = 0.0
    public private(set) var lastPassDescheduledSeconds = 0.0
    /// All `lastPassDescheduledSeconds` so far (`slmd bench` reports it per test).
    public private(set) var callerDescheduledSeconds = 0.0

    /// Times the pool has moved every pinned thread to the next CPU of `pinnedCPUs` (thread
    /// i runs on `pinnedCPUs[(i + rotations) % count]`).
    ///
    /// Why: only the caller opens regions, so when another process shares the caller's CPU,
    /// each time the kernel gives that process the CPU (a whole tick, 4 ms at HZ=250) the
    /// workers finish the region at hand and wait. A worker descheduled costs far less: the
    /// caller takes its chunks. Measured with a `nice -n 5` hog pinned beside the caller, then
    /// beside the worker (x86-avx2, 2 threads / 1 thread, two rounds each): pp64 1.03-1.42x
    /// against 1.36-1.57x. So when the caller keeps losing its CPU during passes, the threads
    /// move round, until the caller sits where nothing else runs.
    public var rotations: Int { shared.rotation.load(ordering: .relaxed) }
    /// Running average share of a pinned pass the caller spent descheduled.
    private var callerOff = 0.0
    private var passesSinceRotation = 0
    /// Passes the next move waits for at least: doubled by every move (a move that found a
    /// quiet CPU is followed by a calm interval, which resets it), so on a machine busy on
    /// every CPU the threads stop wandering: 8, 16, ... up to every 1024 passes.
    private var rotationInterval = ThreadPool.passesBetweenRotations
    /// Share of a pass (running average) the caller may spend descheduled before the threads
    /// move round, and the fewest passes between two moves (so that the average reflects
    /// the new placement before it is judged), at first and at most.
    static let rotateAbove = 0.05
    static let passesBetweenRotations = 8
    static let maxPassesBetweenRotations = 1024

    /// Records that the caller spent `share` of a pinned pass descheduled (internal: tests
    /// feed it shares no test machine can produce on demand).
    func noteCallerDescheduled(share: Double) {
        callerOff += 0.25 * (share - callerOff)
        passesSinceRotation += 1
        guard callerOff > Self.rotateAbove else {
            if passesSinceRotation >= rotationInterval { rotationInterval = Self.passesBetweenRotations }
            return
        }
        guard passesSinceRotation >= rotationInterval else { return }
        shared.rotation.add(1, ordering: .relaxed)
        callerOff = 0
        passesSinceRotation = 0
        rotationInterval = min(rotationInterval * 2, Self.maxPassesBetweenRotations)
    }

    /// Spin iterations before yielding, and yields before sleeping.
    static let spinLimit = 20_000
    static let yieldLimit = 200

    /// Creates `threads - 1` workers. `threads` is clamped to at least 1.
    public convenience init(threads: Int) {
        self.init(threads: threads, hooks: Hooks())
    }

    /// Test seams: code run on worker threads (never the caller) at two points, to simulate
    /// a worker the kernel deschedules before it joins a region or in the middle of a chunk.
    struct Hooks: Sendable {
        /// Before a worker tries to join the region it has seen open.
        var beforeJoin: (@Sendable (_ thread: Int) -> Void)?
        /// After a worker claimed a chunk, before it computes it.
        var beforeChunk: (@Sendable (_ thread: Int, _ chunk: Int) -> Void)?
    }

    init(threads: Int, hooks: Hooks) {
        threadCount = max(1, threads)
        shared = Shared(hooks: hooks, threads: threadCount)
        // One thread per CPU only when the pool uses every CPU it may: with spare CPUs the
        // kernel's placement can avoid a busy one, which a fixed CPU could not.
        let allowed = CPUAffinity.allowedCPUs()
        if threadCount > 1 && allowed.count == threadCount { pinnedCPUs = allowed }
        shared.cpus = pinnedCPUs
        for index in 1..<threadCount {
            let box = Unmanaged.passRetained(WorkerStart(shared: shared, index: index))
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { arg in
                let start = Unmanaged<WorkerStart>.fromOpaque(arg!).takeRetainedValue()
                start.shared.workerLoop(index: start.index)
                return nil
            }, box.toOpaque())
            precondition(rc == 0, "pthread_create failed: \(rc)")
            self.threads.append(tid)
        }
    }

    deinit {
        shared.stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(shared.mutex)
        pthread_cond_broadcast(shared.cond)
        pthread_mutex_unlock(shared.mutex)
        for t in threads { pthread_join(t, nil) }
        savedMask.deallocate()
        heldMask.deallocate()
    }

    private final class WorkerStart {
        let shared: Shared
        let index: Int
        init(shared: Shared, index: Int) { self.shared = shared; self.index = index }
    }

    /// Runs `body(thread, chunk)` exactly once for every chunk in `0..<chunks`, on whichever
    /// thread claims it (`thread` in `0..<threadCount`, 0 is the caller; a thread may run
    /// many chunks or none), and returns when all have finished. Regions from different
    /// callers are serialised, except a single chunk (or a 1-thread pool), which the caller
    /// runs inline as thread 0: callers that share per-thread scratch serialise themselves,
    /// as the runner's one-pass-at-a-time rule does. Thread t's segment is chunks
    /// `chunks * t / threadCount ..< chunks * (t + 1) / threadCount`.
    public func run(chunks: Int, _ body: (_ thread: Int, _ chunk: Int) -> Void) {
        let p = threadCount
        run(chunks: chunks, segmentChunks: { t in chunks * (t + 1) / p - chunks * t / p }, body)
    }

    /// `run` with thread t's segment `segmentChunks(t)` chunks long, the segments in thread
    /// order (their sum is `chunks`).
    func run(chunks: Int, segmentChunks: (_ thread: Int) -> Int, _ body: (_ thread: Int, _ chunk: Int) -> Void) {
        guard chunks > 0 else { return }
        if threadCount == 1 || chunks == 1 || runsSolo {
            for c in 0..<chunks { body(0, c) }
            return
        }
        runLock.withLock { _ in
            let shared = self.shared
            withoutActuallyEscaping(body) { escapable in
                shared.job = escapable
                shared.open(chunks: chunks, segmentChunks: segmentChunks)
                shared.claimChunks(thread: 0)
                stallSeconds += shared.closeAndWait()
                shared.job = nil
            }
        }
    }

    /// `run` for the recoverable `parallelFor`: the caller runs `body(chunk)` for its chunks
    /// and those it takes over; the workers compute theirs from `descriptor` (see
    /// `Shared.claimRecoverable`). Returns once every chunk is done once.
    private func runRecoverable(chunks: Int, descriptor: MatmulChunks, segmentChunks: (_ thread: Int) -> Int,
                                commit: (Range<Int>, UnsafePointer<Float>) -> Void, _ body: (_ chunk: Int) -> Void) {
        runLock.withLock { _ in
            let shared = self.shared
            withoutActuallyEscaping(commit) { escapable in
                shared.recoverable = descriptor
                shared.commit = escapable
                shared.done.store(0, ordering: .relaxed)
                shared.open(chunks: chunks, segmentChunks: segmentChunks)
                // The caller's own chunks: claimed from its segment, then the others' backs.
                var longest = 0.0
                while let c = shared.claim(thread: 0) {
                    let start = monotonicSeconds()
                    body(c)
                    longest = max(longest, monotonicSeconds() - start)
                    shared.done.add(1, ordering: .relaxed)
                }
                // Closed, the region takes no new worker, and every worker's claim is in its
                // slot (written before it left).
                stallSeconds += shared.closeAndWait()
                stallSeconds += shared.awaitOrTakeOver(chunks: chunks, patience: Self.takeoverPatience(longest), body)
                shared.recoverable = nil
                shared.commit = nil
            }
        }
    }

    /// How long the caller waits on a worker's unfinished chunk before computing it itself:
    /// a worker that is running finishes a chunk it began before the caller's last one ended
    /// within about one chunk's time (`longest`, the caller's longest in this region), a
    /// descheduled one only after the other process's slice (a tick: 4 ms at HZ=250). Three
    /// chunks' time, and at least 200 µs so that a worker's slow start after idling (waking
    /// up, cold caches) is not mistaken for preemption: a chunk taken over from a running
    /// worker is computed twice, and the worker misses the next region while it finishes.
    static func takeoverPatience(_ longest: Double) -> Double { max(3 * longest, 200e-6) }

    /// Cuts `0..<count` into contiguous chunks of whole `granule`s (the last may be short) and
    /// runs `body(thread, range)` once per chunk: equal chunks, or with `taper` large first
    /// and finer towards the end (`chunk`). The chunk boundaries depend on `count`, `granule`,
    /// `taper` and `threadCount` only, never on timing.
    public func parallelFor(_ count: Int, granule: Int = 1, taper: Bool = false,
                            _ body: (_ thread: Int, _ range: Range<Int>) -> Void) {
        // Solo, the chunks of a 1-thread pool: one range. Cut into the 2-thread chunks (8 per
        // region), a solo one-token step was 11-15% slower than a 1-thread pool's (x86-avx2,
        // idle cores, alternating: tg32 265-274 tok/s against 278-317; one range: 304-306
        // against 303-313), and solo lost the governor's tests it exists to win.
        let g = max(1, granule), p = runsSolo ? 1 : threadCount, units = (count + g - 1) / g
        let segment = { (t: Int) in p > 1 ? Self.segmentChunks(Self.segmentUnits(units, t, p), taper: taper) : 1 }
        run(chunks: Self.chunkCount(count, granule: g, threads: p, taper: taper), segmentChunks: segment) { t, c in
            let r = Self.chunk(count, part: c, threads: p, granule: g, taper: taper)
            if !r.isEmpty { body(t, r) }
        }
    }

    /// `parallelFor` for a region of matrix products whose chunks a descheduled worker cannot
    /// hold up: the caller takes such a chunk over and computes it again itself.
    ///
    /// Why: on a core shared with another process, the kernel takes the CPU from a worker in
    /// the middle of a chunk for a whole scheduler tick (4 ms at HZ=250), and the region,
    /// every other chunk done, waited for that one (a 64-token prompt beside a `nice -n 5`
    /// hog, x86-avx2, 2 threads: 29 waits of 3.7 ms on average, 18% of the time). Taking the
    /// chunk over is safe only if the late worker can never disturb anything once the region
    /// is over, so a worker computes a chunk from `chunks` (a copy, of plain values and
    /// pointers to memory that outlives the region) into its own scratch, outside the
    /// region, and then enters it again only to `commit` (while the chunk is still its own:
    /// one compare-and-swap decides between it and a thief). The caller computes its chunks,
    /// and any it takes over, with `direct`, straight into place. `direct(range)` and
    /// `commit(range, scratch)` must leave the same results (`MatmulChunks.compute` wrote
    /// scratch with the kernels `direct` runs), so who computed a chunk changes nothing.
    /// Runs as `parallelFor` when `chunks` is nil or a chunk's products would not fit its
    /// scratch. The owner of the memory `chunks` points into calls `quiesce()` before freeing it.
    public func parallelFor(_ count: Int, granule: Int = 1, taper: Bool = false, recoverable chunks: MatmulChunks?,
                            commit: (_ range: Range<Int>, _ scratch: UnsafePointer<Float>) -> Void,
                            direct body: (_ range: Range<Int>) -> Void) {
        let g = max(1, granule), p = runsSolo ? 1 : threadCount, units = (count + g - 1) / g
        guard let chunks, p > 1,
              case let n = Self.chunkCount(count, granule: g, threads: p, taper: taper), n > 1, n <= shared.slots.count,
              chunks.scratchFloats(rows: Self.largestChunkUnits(units, threads: p, taper: taper) * g) <= chunks.scratchPerThread
        else {
            parallelFor(count, granule: g, taper: taper) { _, r in body(r) }
            return
        }
        var d = chunks
        d.count = count; d.granule = g; d.taper = taper; d.threads = p
        let segment = { (t: Int) in Self.segmentChunks(Self.segmentUnits(units, t, p), taper: taper) }
        runRecoverable(chunks: n, descriptor: d, segmentChunks: segment, commit: commit) { c in
            let r = Self.chunk(count, part: c, threads: p, granule: g, taper: taper)
            if !r.isEmpty { body(r) }
        }
    }

    /// Waits until no worker is still computing a chunk of a region that has ended (taken
    /// over from it while it was descheduled): before the memory such a chunk reads or
    /// writes (the weights, the activations, the scratch) is freed.
    public func quiesce() {
        while shared.computing.load(ordering: .acquiring) > 0 { sched_yield() }
    }

    /// Chunks the caller took over from a descheduled worker (see the recoverable `parallelFor`).
    public var takeovers: Int { shared.takeovers }

    /// Units in the largest chunk `parallelFor` cuts `units` into for `threads` threads (the
    /// segments are `units / threads` units long or one more).
    static func largestChunkUnits(_ units: Int, threads: Int, taper: Bool) -> Int {
        var largest = 0
        func segment(_ seg: Int) {
            guard seg > 0 else { return }
            guard taper else {
                let parts = min(seg, untaperedChunksPerThread)
                largest = max(largest, (seg + parts - 1) / parts)
                return
            }
            forEachLevel(seg) { _, size, parts in
                largest = max(largest, (size + parts - 1) / parts)
                return false
            }
        }
        segment(units / threads)
        segment((units + threads - 1) / threads)
        return largest
    }

    /// Bytes of a cache line on the CPUs slmd runs on (x86-64, Cortex-A72/A76).
    public static let cacheLine = 64

    /// Allocates `count` zeroed values for buffers that chunks of a region write side by
    /// side, on a cache-line boundary: with rows a multiple of 16 floats and chunks of whole
    /// 16-row granules, no line then holds two chunks' outputs, which two threads would
    /// otherwise pass back and forth (malloc's 16-byte alignment put a large buffer 16 bytes
    /// into its page). Free with `deallocate()`.
    public static func allocateChunked<T: BitwiseCopyable>(_ type: T.Type, count: Int, zero: T) -> UnsafeMutablePointer<T> {
        let bytes = max(1, count) * MemoryLayout<T>.stride
        let p = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: cacheLine).bindMemory(to: T.self, capacity: count)
        p.initialize(repeating: zero, count: count)
        return p
    }

    /// How many chunks `parallelFor` cuts `count` items of `granule` into on this pool.
    public func chunkCount(_ count: Int, granule: Int = 1, taper: Bool = false) -> Int {
        Self.chunkCount(count, granule: max(1, granule), threads: threadCount, taper: taper)
    }

    /// How many chunks `count` items of `granule` are cut into for `threads` threads.
    public static func chunkCount(_ count: Int, granule: Int, threads: Int, taper: Bool) -> Int {
        guard count > 0 else { return 0 }
        guard threads > 1 else { return 1 }
        let units = (count + granule - 1) / granule
        var n = 0
        for t in 0..<threads { n += segmentChunks(segmentUnits(units, t, threads), taper: taper) }
        return n
    }

    /// The `part`-th chunk of `0..<count` for `threads` threads, in whole `granule`s.
    ///
    /// The units (granules) are cut into one segment per thread, in thread order, of
    /// near-equal size; the pool's threads each start on their own (`run`). Without `taper`,
    /// a segment is `untaperedChunksPerThread` near-equal chunks. Threads claim chunks until none is
    /// left, then the region waits for the last one still computing: with equal chunks that
    /// wait averaged half a chunk, 8-10% of a 2-thread pass (measured on x86-avx2 with 4
    /// chunks a thread, before segments: 5.6 ms of a 65.6 ms 64-token pass, 0.28 of a 3.3 ms
    /// decode step). With `taper`, the first half of a
    /// segment's units is cut into `chunksPerThread` chunks and each following level takes
    /// half of what is left in one chunk, down to a single unit, so the region ends on small
    /// chunks (the ones thieves take first, from the segment's back), after few claims. Which
    /// regions taper is the caller's choice (the runner's: `Runner.taperFromTokens`, with its
    /// measurements).
    public static func chunk(_ count: Int, part: Int, threads: Int, granule: Int = 1, taper: Bool = false) -> Range<Int> {
        guard threads > 1 else { return 0..<count }
        let units = (count + granule - 1) / granule
        var c = part
        for t in 0..<threads {
            let first = units * t / threads, size = segmentUnits(units, t, threads)
            let n = segmentChunks(size, taper: taper)
            guard c >= n else {
                let r = segmentChunk(size, part: c, taper: taper)
                return min((first + r.lowerBound) * granule, count)..<min((first + r.upperBound) * granule, count)
            }
            c -= n
        }
        return count..<count
    }

    /// Units in thread t's segment of `units` for `threads` threads.
    static func segmentUnits(_ units: Int, _ t: Int, _ threads: Int) -> Int {
        units * (t + 1) / threads - units * t / threads
    }

    /// Chunks a segment of `units` units is cut into.
    static func segmentChunks(_ units: Int, taper: Bool) -> Int {
        guard taper else { return min(units, untaperedChunksPerThread) }
        var n = 0
        forEachLevel(units) { _, _, parts in n += parts; return false }
        return n
    }

    /// Units (relative to the segment's first) of chunk `part` of a segment of `units`.
    private static func segmentChunk(_ units: Int, part: Int, taper: Bool) -> Range<Int> {
        guard taper else {
            let parts = min(units, untaperedChunksPerThread)
            return units * part / parts..<units * (part + 1) / parts
        }
        var range = units..<units
        var c = part
        forEachLevel(units) { lo, size, parts in
            guard c < parts else { c -= parts; return false }
            range = (lo + size * c / parts)..<(lo + size * (c + 1) / parts)
            return true
        }
        return range
    }

    /// Calls `body(firstUnit, units, parts)` for each level of a tapering segment of `units`
    /// units, in order, until it returns true.
    @inline(__always)
    private static func forEachLevel(_ units: Int, _ body: (Int, Int, Int) -> Bool) {
        var lo = 0, left = units
        var perLevel = chunksPerThread
        while left > 0 {
            let size = left - left / 2
            if body(lo, size, min(perLevel, size)) { return }
            lo += size
            left -= size
            perLevel = 1
        }
    }

    /// One thread's segment of a region's chunks, `lo..<hi` packed in one word so that its
    /// owner (taking `lo`) and thieves (taking `hi - 1`) claim by one compare-and-swap. Its
    /// own allocation, padded past a cache line: owners and thieves of different segments do
    /// not share a line.
    final class Segment: @unchecked Sendable {
        let bounds = Atomic<Int>(0)
        private let padding: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)

        static func pack(_ lo: Int, _ hi: Int) -> Int { lo | hi << 32 }

        /// Claims the segment's first (`front`) or last chunk; nil when it is empty.
        @inline(__always)
        func take(front: Bool) -> Int? {
            var v = bounds.load(ordering: .relaxed)
            while true {
                let lo = v & 0xFFFF_FFFF, hi = v >> 32
                guard lo < hi else { return nil }
                let r = bounds.compareExchange(expected: v, desired: front ? Self.pack(lo + 1, hi) : Self.pack(lo, hi - 1),
                                               ordering: .relaxed)
                if r.exchanged { return front ? lo : hi - 1 }
                v = r.original
            }
        }
    }

    /// A recoverable region's chunk as a worker claimed it (`Shared.slots`), on a cache line
    /// of its own.
    final class Slot: @unchecked Sendable {
        let word = Atomic<Int>(0)
        private let padding: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    }

    /// State shared by the caller of `run` and the workers.
    ///
    /// `state` packs the region's generation, whether it is open, and how many workers are
    /// inside it, so that joining (only while open, only this generation) and closing are
    /// single atomic operations: a worker can never enter a region the caller has already
    /// closed, and the caller's wait covers every worker that did enter.
    private final class Shared: @unchecked Sendable {
        // @unchecked: `job` and the segments' bounds are written only by the caller of `run`
        // before the release-store that opens a region, and read by workers after joining it
        // (an acquiring CAS on `state`); `job` is cleared after every joined worker has left.
        static let activeMask = 0xFFFF
        static let openBit = 0x1_0000
        static let generationUnit = 0x2_0000

        let state = Atomic<Int>(0)
        let sleepers = Atomic<Int>(0)
        let stopping = Atomic<Bool>(false)
        /// Set while the pool runs solo: idle workers sleep at once instead of spinning on
        /// a core the solo thread or another process could use.
        let parked = Atomic<Bool>(false)
        var job: ((Int, Int) -> Void)?
        /// A recoverable region's chunks and commit (`runRecoverable`), set like `job`.
        var recoverable: MatmulChunks?
        var commit: ((Range<Int>, UnsafePointer<Float>) -> Void)?
        /// Chunks of the recoverable region done (computed and in place).
        let done = Atomic<Int>(0)
        /// Workers computing a recoverable chunk outside its region (`quiesce`).
        let computing = Atomic<Int>(0)
        /// Chunks the caller took over (`ThreadPool.takeovers`); the caller's alone.
        var takeovers = 0
        /// One word per chunk of a recoverable region, claimed by a worker: the region's
        /// generation, the phase and the worker (`slotWord`). Allocated at init, enough for
        /// `slotsPerThread` chunks a thread; a region with more runs unrecoverable.
        let slots: [Slot]
        static let slotsPerThread = 64
        static let claimedPhase = 1, committingPhase = 2, takenPhase = 3
        @inline(__always)
        static func slotWord(generation: Int, phase: Int, thread: Int) -> Int { generation | phase << 8 | thread }
        /// One per thread, allocated at init (none per region).
        let segments: [Segment]
        /// CPU of each worker by index (set before the workers start), empty when unpinned.
        var cpus: [Int] = []
        /// `ThreadPool.rotations`: written by the caller between passes, read by a worker
        /// when it sees a new region open (after the open's release, so never stale then).
        let rotation = Atomic<Int>(0)
        let hooks: Hooks
        let mutex: UnsafeMutablePointer<pthread_mutex_t>
        let cond: UnsafeMutablePointer<pthread_cond_t>

        init(hooks: Hooks, threads: Int) {
            self.hooks = hooks
            segments = (0..<threads).map { _ in Segment() }
            slots = (0..<(threads > 1 ? threads * Self.slotsPerThread : 0)).map { _ in Slot() }
            mutex = .allocate(capacity: 1)
            cond = .allocate(capacity: 1)
            pthread_mutex_init(mutex, nil)
            pthread_cond_init(cond, nil)
        }

        deinit {
            pthread_mutex_destroy(mutex)
            pthread_cond_destroy(cond)
            mutex.deallocate()
            cond.deallocate()
        }

        /// Cuts `chunks` into the threads' segments (`segmentChunks(t)` each, in thread order),
        /// opens the region and wakes sleeping workers. Publishes what the caller set before
        /// (`job`, or `recoverable` and `commit`) and the segments: a worker joins by a CAS
        /// on `state` that reads the open's store (or a later join in its release sequence).
        func open(chunks: Int, segmentChunks: (_ thread: Int) -> Int) {
            var first = 0
            for (t, segment) in segments.enumerated() {
                let n = segmentChunks(t)
                segment.bounds.store(Segment.pack(first, first + n), ordering: .relaxed)
                first += n
            }
            precondition(first == chunks, "segments hold \(first) chunks, not \(chunks)")
            openRegion()
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(mutex)
                pthread_cond_broadcast(cond)
                pthread_mutex_unlock(mutex)
            }
        }

        /// Opens the next region (no worker inside: the last one was closed empty).
        /// Sequentially consistent so the caller's following `sleepers` load and a worker's
        /// `sleepers` add then `state` load cannot both miss each other.
        func openRegion() {
            let s = state.load(ordering: .relaxed)
            let open = (s & ~(Self.activeMask | Self.openBit)) &+ Self.generationUnit | Self.openBit
            state.store(open, ordering: .sequentiallyConsistent)
        }

        /// Closes the region so no worker joins any more, then waits for those inside.
        /// Returns the seconds it waited (0 without reading the clock when nobody was inside).
        func closeAndWait() -> Double {
            var s = state.bitwiseAnd(~Self.openBit, ordering: .acquiringAndReleasing).newValue
            guard s & Self.activeMask != 0 else { return 0 }
            let start = monotonicSeconds()
            // Pinned, the workers we wait for run on other CPUs, so yielding cannot help them
            // and only hands our CPU to whatever else shares it, for a whole scheduler tick
            // (4 ms at HZ=250) in the middle of the pass: with a `nice -n 5` hog on the
            // caller's CPU, pp64 at 2 threads ran at 0.71-0.78x one thread; spinning, 1.03-1.42x
            // (x86-avx2, alternating). Unpinned, a worker may be queued behind us: yield.
            let yields = cpus.isEmpty
            var spins = 0
            while s & Self.activeMask != 0 {
                spins += 1
                if yields && spins > ThreadPool.spinLimit { sched_yield() }
                s = state.load(ordering: .acquiring)
            }
            return monotonicSeconds() - start
        }

        /// Claims and runs chunks until none are left: its own segment's from the front, then
        /// the other segments' from their backs, in thread order after its own.
        @inline(__always)
        func claimChunks(thread: Int) {
            let job = self.job!
            while let c = claim(thread: thread) {
                if thread != 0, let hook = hooks.beforeChunk { hook(thread, c) }
                job(thread, c)
            }
        }

        /// The next chunk for `thread`: its own segment's first, else the last of the next
        /// segment in thread order that has one; nil when none is left.
        @inline(__always)
        func claim(thread: Int) -> Int? {
            let p = segments.count
            for k in 0..<p {
                if let c = segments[(thread + k) % p].take(front: k == 0) { return c }
            }
            return nil
        }

        /// Waits until all `chunks` of the recoverable region are done; a chunk a worker has
        /// not finished `patience` seconds into the wait the caller takes over (if the worker
        /// has not begun its commit) and runs with `body`. Returns the seconds waited, not
        /// counting those spent computing taken-over chunks (work, not a stall).
        func awaitOrTakeOver(chunks: Int, patience: Double, _ body: (Int) -> Void) -> Double {
            guard done.load(ordering: .acquiring) < chunks else { return 0 }
            let start = monotonicSeconds()
            let generation = state.load(ordering: .relaxed) & ~(Self.activeMask | Self.openBit)
            var spins = 0, working = 0.0
            while done.load(ordering: .acquiring) < chunks {
                spins += 1
                guard spins & 63 == 0, monotonicSeconds() - start > patience else { continue }
                for c in 0..<chunks {
                    let w = slots[c].word.load(ordering: .relaxed)
                    guard w & ~0xFFFF == generation, (w >> 8) & 0xFF == Self.claimedPhase else { continue }
                    let taken = Self.slotWord(generation: generation, phase: Self.takenPhase, thread: 0)
                    guard slots[c].word.compareExchange(expected: w, desired: taken, ordering: .acquiringAndReleasing).exchanged
                    else { continue }
                    let t0 = monotonicSeconds()
                    body(c)
                    working += monotonicSeconds() - t0
                    takeovers += 1
                    done.add(1, ordering: .relaxed)
                }
            }
            return monotonicSeconds() - start - working
        }

        /// A worker's part of a recoverable region, entered having joined it: claims a chunk,
        /// notes it in its slot, leaves the region, computes the chunk into `scratch`, and
        /// commits it if the chunk is still its own (nobody took it over meanwhile), which
        /// the region cannot end without. Then joins again for the next chunk, if the region
        /// is still open. A worker that lost its chunk touches nothing of the region again:
        /// by then the region may be over and its buffers reused.
        func claimRecoverable(thread: Int, generation: Int, scratch: UnsafeMutablePointer<Float>) {
            // The region's descriptor, copied: it is the same for every chunk of the region.
            let d = recoverable!
            while true {
                guard let c = claim(thread: thread) else {
                    state.subtract(1, ordering: .releasing)
                    return
                }
                let mine = Self.slotWord(generation: generation, phase: Self.claimedPhase, thread: thread)
                slots[c].word.store(mine, ordering: .relaxed)
                computing.add(1, ordering: .relaxed)
                state.subtract(1, ordering: .releasing)
                // Outside the region from here: only `d`, this thread's scratch and memory that
                // outlives the region (quiesce) are touched until the commit is won.
                if let hook = hooks.beforeChunk { hook(thread, c) }
                let range = ThreadPool.chunk(d.count, part: c, threads: d.threads, granule: d.granule, taper: d.taper)
                d.compute(range, into: scratch)
                let committing = Self.slotWord(generation: generation, phase: Self.committingPhase, thread: thread)
                let won = slots[c].word.compareExchange(expected: mine, desired: committing, ordering: .acquiringAndReleasing).exchanged
                computing.subtract(1, ordering: .releasing)
                guard won else { return }
                // The region waits for this chunk, so its commit closure is alive.
                commit!(range, scratch)
                done.add(1, ordering: .releasing)
                // Join again to claim another chunk, only this region and only while open.
                guard join(generation, from: state.load(ordering: .acquiring)) else { return }
            }
        }

        /// Enters the region of `generation` (one more worker inside) if it is still open,
        /// starting from `s`, a recent load of `state` (another worker joining first only
        /// means another try).
        @inline(__always)
        func join(_ generation: Int, from s: Int) -> Bool {
            var s = s
            while s & Self.openBit != 0 && s & ~(Self.activeMask | Self.openBit) == generation {
                let r = state.compareExchange(expected: s, desired: s + 1, ordering: .acquiringAndReleasing)
                if r.exchanged { return true }
                s = r.original
            }
            return false
        }

        /// Whether `s` is an open region of a generation other than `seen`'s.
        @inline(__always)
        static func isNew(_ s: Int, seen: Int) -> Bool {
            s & openBit != 0 && (s & ~(activeMask | openBit)) != seen
        }

        func workerLoop(index: Int) {
            var placed = -1  // the rotation this worker's mask follows
            var seen = 0  // generation bits of the last region this worker looked at
            while true {
                var spins = 0
                var s = state.load(ordering: .acquiring)
                while !Self.isNew(s, seen: seen) {
                    if stopping.load(ordering: .relaxed) { return }
                    spins += 1
                    if spins >= ThreadPool.spinLimit + ThreadPool.yieldLimit || parked.load(ordering: .relaxed) {
                        pthread_mutex_lock(mutex)
                        sleepers.add(1, ordering: .sequentiallyConsistent)
                        while !Self.isNew(state.load(ordering: .sequentiallyConsistent), seen: seen)
                            && !stopping.load(ordering: .sequentiallyConsistent) {
                            pthread_cond_wait(cond, mutex)
                        }
                        sleepers.subtract(1, ordering: .sequentiallyConsistent)
                        pthread_mutex_unlock(mutex)
                        spins = 0
                    } else if spins >= ThreadPool.spinLimit {
                        sched_yield()
                    }
                    s = state.load(ordering: .acquiring)
                }
                if stopping.load(ordering: .relaxed) { return }
                seen = s & ~(Self.activeMask | Self.openBit)
                if !cpus.isEmpty, case let r = rotation.load(ordering: .relaxed), r != placed {
                    CPUAffinity.pinCurrentThread(to: cpus[(index + r) % cpus.count])
                    placed = r
                }
                if let hook = hooks.beforeJoin { hook(index) }
                // Join only the region seen, and only while it is open; if it has closed (the
                // others did all its chunks), look again.
                guard join(seen, from: s) else { continue }
                if recoverable != nil {
                    claimRecoverable(thread: index, generation: seen, scratch: recoverable!.scratch(thread: index))
                } else {
                    runJob(index)
                    state.subtract(1, ordering: .releasing)
                }
            }
        }

        // Out of line so the worker's reference to the closure is released before it reports
        // leaving: `run` may only return once nobody holds the non-escaping closure.
        @inline(never)
        private func runJob(_ index: Int) {
            claimChunks(thread: index)
        }
    }
}
