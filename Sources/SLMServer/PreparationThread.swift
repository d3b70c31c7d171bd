import SLMEngine
import SLMKernels
#if canImport(Glibc)
import Glibc
#endif

/// One thread that turns requests into engine work: tokenizing prompts, compiling
/// schemas, rendering chat templates, building parse prompts.
///
/// That work grows with the request (a 1 MiB prompt, a 64 KiB schema) and used to run on
/// the I/O thread, where one slow request stalled every client's pings and streams. Here
/// it runs one request at a time from a bounded queue; a full queue answers `busy` on
/// the I/O thread without doing any of the work. It is created at start, like every
/// other thread, so requests never add threads.
final class PreparationThread: @unchecked Sendable {
    // @unchecked: `queue` and `stopping` are guarded by `lock`.
    private let lock = ConditionLock()
    private var queue: [@Sendable () -> Void] = []
    private var stopping = false
    private var thread: pthread_t?
    let capacity: Int
    /// Monotonic time the current item started, 0 when idle (for the watchdog).
    private var busySince: Double = 0

    init(capacity: Int) {
        self.capacity = capacity
    }

    func start() {
        thread = startThread("request-preparation") { self.loop() }
    }

    /// Queues `work`; false (nothing queued) when `capacity` items are already waiting.
    func submit(_ work: @escaping @Sendable () -> Void) -> Bool {
        lock.withLock {
            guard !stopping, queue.count < capacity else { return false }
            queue.append(work)
            lock.broadcast()
            return true
        }
    }

    /// Runs `work` on the calling thread (the I/O thread) if nothing is queued or being
    /// prepared, and returns true; else returns false and runs nothing. Only the I/O
    /// thread submits, so nothing queued after this call can overtake `work`: requests are
    /// still prepared in arrival order.
    func runIfIdle(_ work: () -> Void) -> Bool {
        guard lock.withLock({ !stopping && queue.isEmpty && busySince == 0 }) else { return false }
        work()
        return true
    }

    /// Seconds the item being prepared has run, 0 when idle.
    var currentItemSeconds: Double {
        lock.withLock { busySince == 0 ? 0 : monotonicSeconds() - busySince }
    }

    /// Runs what is queued, then stops the thread.
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private func loop() {
        while true {
            let work: (@Sendable () -> Void)? = lock.withLock {
                while queue.isEmpty && !stopping { lock.wait(seconds: 1) }
                guard !queue.isEmpty else { return nil }
                busySince = monotonicSeconds()
                return queue.removeFirst()
            }
            guard let work else { return }
            work()
            lock.withLock { busySince = 0 }
        }
    }
}
