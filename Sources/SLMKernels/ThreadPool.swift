import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed set of persistent compute threads that run one parallel region at a time.
///
/// The calling thread is worker 0, so `threadCount` threads compute and only
/// `threadCount - 1` are ever created, all at init: none per request or per token.
/// Workers wait for the next region by spinning briefly, then yielding, then sleeping on a
/// condition variable. Pure spinning collapses on a 2-core board when another process
/// takes a core; pure sleeping costs a futex round trip per region, ~150 regions a token.
public final class ThreadPool: @unchecked Sendable {
    /// Number of threads that execute each region (the caller included).
    public let threadCount: Int

    // Workers hold only `shared`, never the pool: a worker calling a method on the pool
    // itself would keep it alive (and its threads running) forever.
    private let shared: Shared
    private var threads: [pthread_t] = []
    private let runLock = Mutex<Void>(())

    /// Spin iterations before yielding, and yields before sleeping.
    private static let spinLimit = 20_000
    private static let yieldLimit = 200

    /// Creates `threads - 1` workers. `threads` is clamped to at least 1.
    public init(threads: Int) {
        threadCount = max(1, threads)
        shared = Shared()
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
    }

    private final class WorkerStart {
        let shared: Shared
        let index: Int
        init(shared: Shared, index: Int) { self.shared = shared; self.index = index }
    }

    /// Runs `body(threadIndex)` once on every thread (index 0 is the caller) and returns
    /// when all have finished. Regions from different callers are serialised.
    public func run(_ body: (Int) -> Void) {
        if threadCount == 1 { body(0); return }
        runLock.withLock { _ in
            let shared = self.shared
            withoutActuallyEscaping(body) { escapable in
                shared.job = escapable
                shared.pending.store(threadCount - 1, ordering: .sequentiallyConsistent)
                shared.generation.add(1, ordering: .sequentiallyConsistent)
                if shared.sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    pthread_mutex_lock(shared.mutex)
                    pthread_cond_broadcast(shared.cond)
                    pthread_mutex_unlock(shared.mutex)
                }
                escapable(0)
                var spins = 0
                while shared.pending.load(ordering: .acquiring) != 0 {
                    spins += 1
                    if spins > Self.spinLimit { sched_yield() }
                }
                shared.job = nil
            }
        }
    }

    /// Splits `0..<count` into `threadCount` contiguous chunks (multiples of `granule`
    /// where possible) and runs `body(range)` on each thread's chunk.
    public func parallelFor(_ count: Int, granule: Int = 1, _ body: (Range<Int>) -> Void) {
        run { t in
            let r = Self.chunk(count, part: t, of: threadCount, granule: granule)
            if !r.isEmpty { body(r) }
        }
    }

    /// The `part`-th of `parts` near-equal contiguous chunks of `0..<count`.
    public static func chunk(_ count: Int, part: Int, of parts: Int, granule: Int = 1) -> Range<Int> {
        let units = (count + granule - 1) / granule
        let lo = units * part / parts * granule
        let hi = min(count, units * (part + 1) / parts * granule)
        return min(lo, count)..<hi
    }

    /// State shared by the caller of `run` and the workers.
    private final class Shared: @unchecked Sendable {
        // @unchecked: `job` is written only by the caller of `run` before the release-store
        // of `generation` and read by workers after the matching acquire-load.
        let generation = Atomic<Int>(0)
        let pending = Atomic<Int>(0)
        let sleepers = Atomic<Int>(0)
        let stopping = Atomic<Bool>(false)
        var job: ((Int) -> Void)?
        let mutex: UnsafeMutablePointer<pthread_mutex_t>
        let cond: UnsafeMutablePointer<pthread_cond_t>

        init() {
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

        func workerLoop(index: Int) {
            var seen = 0
            while true {
                var spins = 0
                while generation.load(ordering: .acquiring) == seen {
                    if stopping.load(ordering: .relaxed) { return }
                    spins += 1
                    if spins < ThreadPool.spinLimit { continue }
                    if spins < ThreadPool.spinLimit + ThreadPool.yieldLimit { sched_yield(); continue }
                    pthread_mutex_lock(mutex)
                    sleepers.add(1, ordering: .sequentiallyConsistent)
                    while generation.load(ordering: .sequentiallyConsistent) == seen
                        && !stopping.load(ordering: .sequentiallyConsistent) {
                        pthread_cond_wait(cond, mutex)
                    }
                    sleepers.subtract(1, ordering: .sequentiallyConsistent)
                    pthread_mutex_unlock(mutex)
                    spins = 0
                }
                if stopping.load(ordering: .relaxed) { return }
                seen = generation.load(ordering: .acquiring)
                runJob(index)
                pending.subtract(1, ordering: .releasing)
            }
        }

        // Out of line so the worker's reference to the closure is released before it reports
        // completion: `run` may only return once nobody holds the non-escaping closure.
        @inline(never)
        private func runJob(_ index: Int) {
            job!(index)
        }
    }
}
