#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Decides, pass by pass, whether a forward pass runs on all the pool's threads or on the
/// calling thread alone.
///
/// Why: on a board the daemon shares its cores with the UI it serves. When another process
/// keeps one core busy, every parallel region waits for whichever of our threads the kernel
/// has just descheduled (the caller, which alone opens regions, or a worker holding a chunk),
/// and a decode step at 2 threads becomes slower than at 1 (measured with a niced hog on one
/// of two cores: tg 221 tok/s at 2 threads against 274 at 1), while prefill still gains from
/// the second core under the same load (pp 648 against 515). Neither can be known in
/// advance, so the governor measures.
///
/// All threads is the default. When the pool reports that the caller is stalling on
/// descheduled workers (a sizeable share of a pass spent waiting for a chunk another thread
/// claimed), the governor times passes on one thread; it then keeps the faster mode and
/// re-tests the other now and then, less often while the tests confirm the choice.
///
/// One-token passes (decode steps) are tested on one thread now and then even without
/// stalls: there the second thread gains least (x86-avx2 here, idle: 2 threads 1.04-1.17x
/// one), and beside a busy core the parallel step lost to one thread with no stall to show
/// for it (a worker descheduled between regions, not inside one), 0.77-0.89x a 1-thread run,
/// the governor never testing solo. Testing it: 0.87-1.09x (six rounds beside a `nice -n 5`
/// hog, median 0.99 against 0.86). The tests cost little when they lose: 4 passes after 8,
/// 16, ... up to every 256. Longer passes keep the stall condition: a solo test of a prompt
/// would double that request's time to first token on idle cores.
///
/// A pass that loses most of its time (`severeStall`) starts a test at once (after
/// `severeMinPasses` parallel passes), not after the interval. Measured, x86-avx2, pp64 at 2
/// threads beside a busy loop on one core: niced 5 in the same session the parallel passes
/// lost 7-22% and still ran 1.4-1.6x one thread; at equal weight (its own session or cgroup,
/// where nice does not count: the UI beside a systemd service) they lost 61-66% and ran at
/// 0.70-0.72x one thread, so the 8 passes before the first test cost a prompt or two each
/// twice their solo time.
///
/// A test is `probeLength` passes, judged by their mean. Under contention parallel passes are
/// bimodal (measured: one-token steps at 2 threads beside a niced hog, 3 ms when no thread was
/// descheduled, 5–9 ms when one was, against 3.6 ms solo), so a test of one pass that happened
/// to dodge the hog switched back to parallel every other test, and the step averaged the
/// slower mode's time half the time.
///
/// It only chooses which threads compute the chunks. Chunk boundaries and every kernel's
/// accumulation order stay the same, so the choice never changes a result.
public struct ParallelismGovernor: Sendable {
    /// Passes are grouped by size (tokens per pass): the better mode differs between a
    /// one-token decode step and a long prefill chunk. Upper bounds of the groups.
    static let bucketLimits = [1, 4, 16, 64, Int.max]
    /// Share of a parallel pass lost to contention above which solo is tried.
    static let stallThreshold = 0.1
    /// Share of a parallel pass lost above which solo is tested at once (see above).
    static let severeStall = 0.45
    /// Parallel passes since the last test before a severe one may start the next.
    static let severeMinPasses = 2
    /// Passes of at most this many tokens test solo even when nothing stalls (see above).
    static let alwaysTestUpTo = 1
    /// Passes of a group between tests of the other mode, at first...
    static let firstProbeInterval = 8
    /// ...doubling while the tests confirm the current mode, up to this.
    static let maxProbeInterval = 256
    /// Passes of the other mode in one test, whose mean decides.
    static let probeLength = 4
    /// Weight of the newest pass in the running averages.
    static let smoothing = 0.25

    struct Bucket: Sendable {
        /// Running average seconds per token, [parallel, solo]; nil until measured.
        var perToken: [Double?] = [nil, nil]
        /// Running average share of a parallel pass lost to contention, and the last one's.
        var stall = 0.0
        var lastStall = 0.0
        var solo = false
        var passesSinceProbe = 0
        var probeInterval = ParallelismGovernor.firstProbeInterval
        /// Passes of the test under way (0: none) and the sum of their seconds per token.
        var probePasses = 0
        var probeSum = 0.0
    }

    var buckets = [Bucket](repeating: Bucket(), count: bucketLimits.count)
    /// Passes run on one thread / on all so far (for stats and tests).
    public private(set) var soloPasses = 0
    public private(set) var parallelPasses = 0

    public init() {}

    static func bucket(tokens: Int) -> Int {
        bucketLimits.firstIndex { tokens <= $0 } ?? bucketLimits.count - 1
    }

    /// Whether the next pass of `tokens` tokens should run on the calling thread alone.
    public func shouldRunSolo(tokens: Int) -> Bool {
        let b = buckets[Self.bucket(tokens: tokens)]
        if b.probePasses > 0 { return !b.solo }  // a test under way runs to its end
        let due = b.passesSinceProbe >= b.probeInterval
        if b.solo { return !due }
        // In parallel mode, test solo when stalls say it might help, or for decode steps;
        // at once when the last pass lost most of its time.
        let severe = b.lastStall > Self.severeStall && b.passesSinceProbe >= Self.severeMinPasses
        return severe || due && (b.stall > Self.stallThreshold || tokens <= Self.alwaysTestUpTo)
    }

    /// Records that a pass of `tokens` tokens took `seconds`, on one thread or on all, and
    /// lost `lost` of them (parallel passes only) to contention: the calling thread
    /// descheduled, or waiting for a worker that was.
    public mutating func record(tokens: Int, solo: Bool, seconds: Double, lost: Double) {
        let i = Self.bucket(tokens: tokens)
        var b = buckets[i]
        let m = solo ? 1 : 0
        let sample = seconds / Double(max(1, tokens))
        b.perToken[m] = b.perToken[m].map { $0 + Self.smoothing * (sample - $0) } ?? sample
        if solo { soloPasses += 1 } else {
            parallelPasses += 1
            let share = seconds > 0 ? min(1, lost / seconds) : 0
            b.stall += Self.smoothing * (share - b.stall)
            b.lastStall = share
        }
        if solo == b.solo {
            b.passesSinceProbe += 1
        } else {
            b.probePasses += 1
            b.probeSum += sample
        }
        if b.probePasses >= Self.probeLength {
            // A test of the other mode ended: switch if it was faster on average, then test
            // again soon; else stay and test less often. Its mean, fresh, replaces the other
            // mode's older average.
            let mean = b.probeSum / Double(b.probePasses)
            let current = b.perToken[b.solo ? 1 : 0] ?? .infinity
            b.perToken[m] = mean
            b.probePasses = 0
            b.probeSum = 0
            b.passesSinceProbe = 0
            if mean < current {
                b.solo = solo
                b.probeInterval = Self.firstProbeInterval
            } else {
                b.probeInterval = min(Self.maxProbeInterval, b.probeInterval * 2)
            }
        }
        buckets[i] = b
    }
}
