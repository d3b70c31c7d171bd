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

/// CPU seconds the calling thread has run: beside `monotonicSeconds`, how long it was
/// descheduled (the parallelism governor, the pool's CPU rotation).
public func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// CPU affinity for the compute threads (`ThreadPool`).
///
/// Why: on a 2-core board shared with another process, the pool's two threads, free to
/// move, could be queued on one core behind each other while the other process held the
/// second; every parallel region then waited for a thread stuck behind its own sibling.
/// Measured with `nice -n 5` hog on one of 2 vCPUs (AVX2 path, three rounds, tok/s at 2
/// threads, free -> pinned): pp64 498 -> 631, 562 -> 592, 686 -> 806; tg32 204 -> 238,
/// 238 -> 268, 239 -> 251.
public enum CPUAffinity {
    // glibc declares sched_{get,set}affinity only under _GNU_SOURCE, which Swift's Glibc
    // module does not define: looked up once at run time instead (always present on Linux).
    private typealias AffinityCall = @convention(c) (pid_t, Int, UnsafeMutableRawPointer?) -> Int32
    #if os(Linux)
    private static let getAffinity: AffinityCall? = symbol("sched_getaffinity")
    private static let setAffinity: AffinityCall? = symbol("sched_setaffinity")
    private static func symbol(_ name: String) -> AffinityCall? {
        guard let handle = dlopen(nil, RTLD_NOW), let p = dlsym(handle, name) else { return nil }
        return unsafeBitCast(p, to: AffinityCall.self)
    }
    #endif
    /// Bytes of a CPU mask (1024 CPUs, glibc's cpu_set_t).
    public static let maskBytes = 128

    /// Reads the calling thread's mask into `mask` (`maskBytes` bytes). Returns whether it could.
    public static func readMask(into mask: UnsafeMutableRawPointer) -> Bool {
        #if os(Linux)
        guard let getAffinity else { return false }
        return getAffinity(0, maskBytes, mask) == 0
        #else
        return false
        #endif
    }

    /// Sets the calling thread's mask from `mask` (`maskBytes` bytes). Returns whether the
    /// kernel accepted it.
    @discardableResult
    public static func writeMask(_ mask: UnsafeMutableRawPointer) -> Bool {
        #if os(Linux)
        guard let setAffinity else { return false }
        return setAffinity(0, maskBytes, mask) == 0
        #else
        return false
        #endif
    }

    /// The CPUs the calling thread may run on (its mask: all online CPUs unless a systemd
    /// `CPUAffinity=`, a cpuset or taskset narrowed it), ascending; empty if unreadable.
    public static func allowedCPUs() -> [Int] {
        withUnsafeTemporaryAllocation(byteCount: maskBytes, alignment: 8) { buf -> [Int] in
            guard let p = buf.baseAddress, readMask(into: p) else { return [] }
            return (0..<maskBytes * 8).filter { buf[$0 / 8] & (1 << ($0 % 8)) != 0 }
        }
    }

    /// Restricts the calling thread to `cpu`. Returns whether the kernel accepted it.
    @discardableResult
    public static func pinCurrentThread(to cpu: Int) -> Bool {
        guard cpu >= 0, cpu < maskBytes * 8 else { return false }
        return withUnsafeTemporaryAllocation(byteCount: maskBytes, alignment: 8) { buf -> Bool in
            buf.initializeMemory(as: UInt8.self, repeating: 0)
            buf[cpu / 8] = 1 << (cpu % 8)
            return writeMask(buf.baseAddress!)
        }
    }
}
