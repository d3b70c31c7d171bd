#if canImport(Glibc)
import Glibc
#endif

/// Starts a POSIX thread that runs `body` and returns its handle for `pthread_join`.
///
/// The daemon's long-lived threads (engine, I/O, request preparation) are plain pthreads, not
/// Swift concurrency tasks: each owns a blocking loop and must never be parked behind other
/// work on a cooperative pool. They start once, at start-up, so failing to create one is a
/// fatal configuration problem (a daemon without them cannot serve), reported with `what`.
public func startThread(_ what: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Start: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Start(body))
    var tid = pthread_t()
    let rc = pthread_create(&tid, nil, { arg in
        Unmanaged<Start>.fromOpaque(arg!).takeRetainedValue().body()
        return nil
    }, box.toOpaque())
    precondition(rc == 0, "cannot start the \(what) thread: \(rc)")
    return tid
}

/// Monotonic seconds since an arbitrary origin: the daemon's one clock for durations
/// (deadlines, timings, the parallelism governor). slmctl, which links no daemon module,
/// keeps its own.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
