#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mutex with a condition variable: the engine thread sleeps on it when there is no
/// work, and submitters wake it; the server's request-preparation thread does the same.
/// (Synchronization.Mutex has no condition variable.)
public final class ConditionLock: @unchecked Sendable {
    // @unchecked: all access goes through the pthread mutex.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        // Timed waits measure monotonic time, so a clock change cannot stall the engine.
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(cond)
        mutex.deallocate()
        cond.deallocate()
    }

    /// Runs `body` with the mutex held.
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits (the lock must be held) until signalled or `seconds` pass.
    public func wait(seconds: Double) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let whole = Int(seconds)
        let nanos = Int((seconds - Double(whole)) * 1e9)
        ts.tv_sec += whole
        ts.tv_nsec += nanos
        if ts.tv_nsec >= 1_000_000_000 {
            ts.tv_sec += 1
            ts.tv_nsec -= 1_000_000_000
        }
        pthread_cond_timedwait(cond, mutex, &ts)
    }

    /// Wakes every waiter (call with the lock held).
    public func broadcast() {
        pthread_cond_broadcast(cond)
    }
}
