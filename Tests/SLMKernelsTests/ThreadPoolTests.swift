import Synchronization
import XCTest
@testable import SLMKernels
#if canImport(Glibc)
import Glibc
#endif

final class ThreadPoolTests: XCTestCase {
    /// A pool that uses every CPU the process may run on puts each thread on its own CPU:
    /// each worker for good, the caller only while it drives a pass; with spare CPUs nothing
    /// is pinned.
    func testThreadsTakeOneCPUEachWhenThePoolUsesThemAll() throws {
        let (two, notes) = try Self.onTwoCPUs {
            var notes: [String] = []
            let spare = ThreadPool(threads: 1)
            notes.append("1 of 2: \(spare.pinnedCPUs)")
            let pool = ThreadPool(threads: 2)
            notes.append("pinned \(pool.pinnedCPUs)")
            notes += ThreadPoolTests.placesInOnePass(pool)
            notes.append("caller after \(CPUAffinity.allowedCPUs())")
            return notes
        }
        XCTAssertEqual(notes.first, "1 of 2: []", "a pool with a spare CPU floats")
        XCTAssertTrue(notes.contains("pinned \(two)"), "\(notes)")
        XCTAssertTrue(notes.contains("caller in pass [\(two[0])]"), "\(notes)")
        // A worker may not have joined any region on a busy machine; if it did, on its own CPU.
        XCTAssertFalse(notes.contains { $0.hasPrefix("worker") && $0 != "worker [\(two[1])]" }, "\(notes)")
        XCTAssertEqual(notes.last, "caller after \(two)", "the caller gets its own mask back")
    }

    /// A caller that keeps losing its CPU during passes moves round with the workers: the
    /// caller to the next CPU, each worker to the one after its own; idle passes never move.
    func testThreadsMoveRoundWhenTheCallerKeepsLosingItsCPU() throws {
        let (two, notes) = try Self.onTwoCPUs {
            var notes: [String] = []
            let pool = ThreadPool(threads: 2)
            for _ in 0..<100 { pool.noteCallerDescheduled(share: 0.01) }
            notes.append("idle: \(pool.rotations)")
            for _ in 0..<ThreadPool.passesBetweenRotations { pool.noteCallerDescheduled(share: 0.3) }
            notes.append("descheduled: \(pool.rotations)")
            notes += ThreadPoolTests.placesInOnePass(pool)
            return notes
        }
        XCTAssertTrue(notes.contains("idle: 0"), "\(notes)")
        XCTAssertTrue(notes.contains("descheduled: 1"), "\(notes)")
        XCTAssertTrue(notes.contains("caller in pass [\(two[1])]"), "\(notes)")
        XCTAssertFalse(notes.contains { $0.hasPrefix("worker") && $0 != "worker [\(two[0])]" }, "\(notes)")
    }

    /// A pass leaves an ordinary caller with its own mask; a held caller (`holdsCaller`, the
    /// engine's thread) stays on its CPU between passes, follows the pool when it moves
    /// round, and gets its own mask back from `releaseCaller` (before a solo pass). Only
    /// one thread is held: another caller gets its mask back after its pass, and its
    /// `releaseCaller` leaves the held one alone.
    func testHeldCallerStaysOnItsCPUUntilReleased() throws {
        let (two, notes) = try Self.onTwoCPUs {
            var notes: [String] = []
            let pool = ThreadPool(threads: 2)
            let own = CPUAffinity.allowedCPUs()
            _ = ThreadPoolTests.placesInOnePass(pool)
            notes.append("after a pass: \(CPUAffinity.allowedCPUs())")
            pool.holdsCaller = true
            _ = ThreadPoolTests.placesInOnePass(pool)
            notes.append("held: \(CPUAffinity.allowedCPUs())")
            for _ in 0..<ThreadPool.passesBetweenRotations { pool.noteCallerDescheduled(share: 0.3) }
            notes += ThreadPoolTests.placesInOnePass(pool).map { "moved round, \($0)" }
            notes.append("held after moving: \(CPUAffinity.allowedCPUs())")
            let other = startThread("other caller") {
                ThreadPoolTests.narrow(to: own)  // it inherited the held thread's one CPU
                _ = ThreadPoolTests.placesInOnePass(pool)
                pool.releaseCaller()
                let mask = CPUAffinity.allowedCPUs()
                _ = ThreadPoolTests.placesInOnePass(pool)
                ThreadPoolTests.otherNotes.withLock { $0 = ["other after a pass: \(mask)", "other after two: \(CPUAffinity.allowedCPUs())"] }
            }
            pthread_join(other, nil)
            notes += ThreadPoolTests.otherNotes.withLock { $0 }
            notes.append("still held: \(CPUAffinity.allowedCPUs())")
            _ = ThreadPoolTests.placesInOnePass(pool)
            notes.append("held after another pass: \(CPUAffinity.allowedCPUs())")
            pool.releaseCaller()
            notes.append("released: \(CPUAffinity.allowedCPUs())")
            pool.releaseCaller()
            notes.append("released twice: \(CPUAffinity.allowedCPUs())")
            return notes
        }
        XCTAssertTrue(notes.contains("after a pass: \(two)"), "\(notes)")
        XCTAssertTrue(notes.contains("held: [\(two[0])]"), "\(notes)")
        XCTAssertTrue(notes.contains("moved round, caller in pass [\(two[1])]"), "\(notes)")
        XCTAssertTrue(notes.contains("held after moving: [\(two[1])]"), "\(notes)")
        XCTAssertTrue(notes.contains("other after a pass: \(two)"), "\(notes)")
        XCTAssertTrue(notes.contains("other after two: \(two)"), "\(notes)")
        XCTAssertTrue(notes.contains("still held: [\(two[1])]"), "\(notes)")
        XCTAssertTrue(notes.contains("held after another pass: [\(two[1])]"), "\(notes)")
        XCTAssertTrue(notes.contains("released: \(two)"), "\(notes)")
        XCTAssertTrue(notes.contains("released twice: \(two)"), "\(notes)")
    }

    /// What the second caller of testHeldCallerStaysOnItsCPUUntilReleased saw.
    private static let otherNotes = Mutex<[String]>([])

    /// With every CPU busy no move helps: the moves come at doubling intervals (8, 16, ...,
    /// up to 1024 passes), and a calm spell resets the interval.
    func testMovesBackOffWhenNoCPUIsQuiet() {
        let pool = ThreadPool(threads: 2)
        for _ in 0..<3000 { pool.noteCallerDescheduled(share: 0.3) }
        // Moves after 8, 24, 56, 120, 248, 504, 1016, 2040 passes (then every 1024).
        XCTAssertEqual(pool.rotations, 8)
        for _ in 0..<2000 { pool.noteCallerDescheduled(share: 0) }
        let before = pool.rotations
        for _ in 0..<ThreadPool.passesBetweenRotations { pool.noteCallerDescheduled(share: 0.3) }
        XCTAssertEqual(pool.rotations, before + 1, "calm reset the interval")
    }

    /// Runs `body` on a thread narrowed to the first 2 CPUs this process may use (so a test
    /// means the same on any machine with at least 2; skipped with fewer) and returns those
    /// CPUs and `body`'s notes.
    private static func onTwoCPUs(_ body: @escaping @Sendable () -> [String]) throws -> ([Int], [String]) {
        let all = CPUAffinity.allowedCPUs()
        guard all.count >= 2 else { throw XCTSkip("needs 2 CPUs, this process may use \(all.count)") }
        let two = Array(all.prefix(2))
        let outcome = Mutex<[String]>([])
        let t = startThread("affinity test") {
            narrow(to: two)
            let notes = body()
            outcome.withLock { $0 = notes }
        }
        pthread_join(t, nil)
        return (two, outcome.withLock { $0 })
    }

    /// Narrows the calling thread (and the workers it creates, which inherit it) to `cpus`.
    private static func narrow(to cpus: [Int]) {
        withUnsafeTemporaryAllocation(byteCount: CPUAffinity.maskBytes, alignment: 8) { buf in
            buf.initializeMemory(as: UInt8.self, repeating: 0)
            for c in cpus { buf[c / 8] |= 1 << (c % 8) }
            _ = CPUAffinity.writeMask(buf.baseAddress!)
        }
    }

    /// One pinned pass of 200 regions: where the caller ran ("caller in pass [cpu]") and
    /// where any worker that joined ran ("worker [cpu]").
    private static func placesInOnePass(_ pool: ThreadPool) -> [String] {
        let seen = Mutex<Set<String>>([])
        pool.pinningCaller {
            _ = seen.withLock { $0.insert("caller in pass \(CPUAffinity.allowedCPUs())") }
            for _ in 0..<200 {
                pool.run(chunks: 8) { thread, _ in
                    if thread > 0 { _ = seen.withLock { $0.insert("worker \(CPUAffinity.allowedCPUs())") } }
                    var x = 0.0
                    for i in 0..<20_000 { x += Double(i).squareRoot() }
                    if x < 0 { print(x) }
                }
            }
        }
        return seen.withLock { $0.sorted() }
    }

    func testChunksPartition() {
        for count in [0, 1, 5, 63, 64, 1000, 1537] {
            for threads in 1...5 {
                for granule in [1, 4, 16] {
                    for taper in [false, true] {
                        let parts = ThreadPool.chunkCount(count, granule: granule, threads: threads, taper: taper)
                        let sizes = checkPartition(count, parts: parts, threads: threads, granule: granule, taper: taper)
                        let units = (count + granule - 1) / granule
                        guard threads > 1, units > 1 else { XCTAssertEqual(parts, min(1, count)); continue }
                        guard taper else {
                            XCTAssertEqual(parts, min(units, threads * ThreadPool.untaperedChunksPerThread))
                            continue
                        }
                        // Few claims: chunksPerThread per thread for the first half, then one
                        // level of one chunk per thread per halving.
                        let levels = units.bitWidth - units.leadingZeroBitCount
                        XCTAssertLessThanOrEqual(parts, threads * (ThreadPool.chunksPerThread + levels))
                        // The region ends on a single unit; the first chunks are the largest (to a
                        // unit of rounding).
                        XCTAssertLessThanOrEqual(sizes.last!, granule)
                        XCTAssertLessThanOrEqual(sizes.max()!, sizes.first! + granule, "count \(count) threads \(threads) granule \(granule)")
                    }
                }
            }
        }
        // The shape for a 576-row matrix in 16-row granules on 2 threads: a segment of 18
        // units each, tapering to single units at its back (where thieves start).
        XCTAssertEqual((0..<ThreadPool.chunkCount(576, granule: 16, threads: 2, taper: true)).map {
            ThreadPool.chunk(576, part: $0, threads: 2, granule: 16, taper: true).count / 16 }, [4, 5, 5, 2, 1, 1, 4, 5, 5, 2, 1, 1])
        XCTAssertEqual((0..<ThreadPool.chunkCount(576, granule: 16, threads: 2, taper: false)).map {
            ThreadPool.chunk(576, part: $0, threads: 2, granule: 16, taper: false).count / 16 }, [18, 18])
    }

    /// Checks that the chunks tile `0..<count` in order, none empty, each ending on a granule
    /// (but the last); returns their sizes.
    private func checkPartition(_ count: Int, parts: Int, threads: Int, granule: Int, taper: Bool,
                                file: StaticString = #filePath, line: UInt = #line) -> [Int] {
        var next = 0
        var sizes: [Int] = []
        for p in 0..<parts {
            let r = ThreadPool.chunk(count, part: p, threads: threads, granule: granule, taper: taper)
            XCTAssertEqual(r.lowerBound, next, "count \(count) threads \(threads) granule \(granule) taper \(taper)",
                           file: file, line: line)
            XCTAssertFalse(r.isEmpty, "no chunk is empty", file: file, line: line)
            if r.upperBound != count { XCTAssertEqual(r.upperBound % granule, 0, file: file, line: line) }
            next = max(next, r.upperBound)
            sizes.append(r.count)
        }
        XCTAssertEqual(next, count, file: file, line: line)
        return sizes
    }

    /// Buffers that chunks write side by side start on a cache line, whatever malloc does
    /// with their size (small ones from the heap, large ones mmapped).
    func testChunkedBuffersStartOnACacheLine() {
        for count in [1, 3, 100, 4097, 1 << 20] {
            let p = ThreadPool.allocateChunked(Float.self, count: count, zero: 0)
            defer { p.deallocate() }
            XCTAssertEqual(Int(bitPattern: p) % ThreadPool.cacheLine, 0, "\(count) floats")
            XCTAssertTrue(UnsafeBufferPointer(start: p, count: count).allSatisfy { $0 == 0 })
        }
        let a = Q8Activations(capacityTokens: 64, capacityCols: 1536)
        for p in [UnsafeRawPointer(a.qs), UnsafeRawPointer(a.d), UnsafeRawPointer(a.s), UnsafeRawPointer(a.isum)] {
            XCTAssertEqual(Int(bitPattern: p) % ThreadPool.cacheLine, 0)
        }
    }

    func testParallelForCoversEveryIndexOnce() {
        let pool = ThreadPool(threads: 3)
        for taper in [false, true] {
            for count in [0, 1, 2, 7, 100, 4097] {
                let ranges = Mutex<[Range<Int>]>([])
                let badThread = Atomic<Int>(0)
                pool.parallelFor(count, granule: 4, taper: taper) { t, range in
                    if t < 0 || t >= pool.threadCount { badThread.add(1, ordering: .relaxed) }
                    ranges.withLock { $0.append(range) }
                }
                var hits = [Int](repeating: 0, count: count)
                for r in ranges.withLock({ $0 }) {
                    for i in r { hits[i] += 1 }
                    if r.upperBound != count { XCTAssertEqual(r.upperBound % 4, 0, "chunk \(r) of \(count)") }
                }
                XCTAssertTrue(hits.allSatisfy { $0 == 1 }, "count \(count) taper \(taper)")
                XCTAssertEqual(ranges.withLock { $0.count }, pool.chunkCount(count, granule: 4, taper: taper))
                XCTAssertEqual(badThread.load(ordering: .relaxed), 0)
            }
        }
    }

    /// Workers that are late to a region or slow inside a chunk (as when the kernel
    /// deschedules them) change who runs a chunk, never which chunks run: each exactly once,
    /// and no thread index ever runs two chunks at once (per-thread scratch stays private).
    func testEveryChunkRunsOnceWhateverTheTiming() {
        let hooks = ThreadPool.Hooks(
            beforeJoin: { t in if t == 1 { usleep(UInt32.random(in: 0...300)) } },
            beforeChunk: { _, c in if c % 3 == 0 { usleep(UInt32.random(in: 0...200)) } })
        let pool = ThreadPool(threads: 3, hooks: hooks)
        let busy = Mutex<[Int]>([Int](repeating: 0, count: pool.threadCount))
        let overlaps = Atomic<Int>(0)
        var total = 0
        for round in 0..<200 {
            let chunks = 1 + round % 17
            total += chunks
            let hits = Mutex<[Int]>([Int](repeating: 0, count: chunks))
            pool.run(chunks: chunks) { t, c in
                busy.withLock {
                    if $0[t] != 0 { overlaps.add(1, ordering: .relaxed) }
                    $0[t] += 1
                }
                hits.withLock { $0[c] += 1 }
                usleep(UInt32(c % 2) * 50)
                busy.withLock { $0[t] -= 1 }
            }
            XCTAssertEqual(hits.withLock { $0 }, [Int](repeating: 1, count: chunks), "round \(round)")
        }
        XCTAssertEqual(overlaps.load(ordering: .relaxed), 0)
        XCTAssertGreaterThan(total, 0)
    }

    private final class AwayWorker: Sendable {
        let held = Atomic<Bool>(true)
        let gate = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let chunksRun = Atomic<Int>(0)
        let onWorker = Atomic<Int>(0)
    }

    /// A worker that never gets the CPU does not stall the caller: while worker 1 is held
    /// before joining, the caller finishes region after region alone, its own segment front
    /// to back, then the worker's from its back. (With fixed slices it would wait for worker
    /// 1's slice forever; the semaphore's timeout turns that hang into a failure.)
    func testCallerFinishesWhileAWorkerIsAway() {
        let w = AwayWorker()
        let hooks = ThreadPool.Hooks(beforeJoin: { _ in if w.held.load(ordering: .acquiring) { w.gate.wait() } })
        let pool = ThreadPool(threads: 2, hooks: hooks)
        let order = Mutex<[Int]>([])
        Thread.detachNewThread {
            for region in 0..<100 {
                pool.run(chunks: 8) { t, c in
                    w.chunksRun.add(1, ordering: .relaxed)
                    if t != 0 { w.onWorker.add(1, ordering: .relaxed) }
                    if region == 0 { order.withLock { $0.append(c) } }
                }
            }
            w.done.signal()
        }
        let finished = w.done.wait(timeout: .now() + 60) == .success
        XCTAssertTrue(finished, "the caller waited for a worker that never arrived")
        w.held.store(false, ordering: .releasing)
        w.gate.signal()
        if !finished { _ = w.done.wait(timeout: .now() + 60) }
        XCTAssertEqual(w.chunksRun.load(ordering: .relaxed), 800)
        XCTAssertEqual(w.onWorker.load(ordering: .relaxed), 0)
        XCTAssertEqual(order.withLock { $0 }, [0, 1, 2, 3, 7, 6, 5, 4])
        // Released, the worker joins later regions again. Regions until it does, for up to
        // 10 s: 5000 regions took ~8 ms once (a full suite run), and a worker woken on the CPU
        // the caller was spinning on had not run yet.
        let joined = Atomic<Int>(0)
        let deadline = Date().addingTimeInterval(10)
        while joined.load(ordering: .relaxed) == 0 && Date() < deadline {
            pool.run(chunks: 64) { t, _ in
                if t != 0 { joined.add(1, ordering: .relaxed) }
                for _ in 0..<200 { _ = joined.load(ordering: .relaxed) }
            }
        }
        XCTAssertGreaterThan(joined.load(ordering: .relaxed), 0, "the released worker never joined again")
    }

#if os(Linux)
    private func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
    }

    /// A solo pool runs a `parallelFor` as one range on the caller, as a 1-thread pool does,
    /// and a `run` chunk by chunk, in order.
    func testSoloRunsEverythingOnTheCaller() {
        let pool = ThreadPool(threads: 3)
        pool.runsSolo = true
        let seen = Mutex<[(Int, Range<Int>)]>([])
        pool.parallelFor(1000, granule: 4, taper: true) { t, r in seen.withLock { $0.append((t, r)) } }
        XCTAssertEqual(seen.withLock { $0.map(\.0) }, [0])
        XCTAssertEqual(seen.withLock { $0.map(\.1) }, [0..<1000])
        let chunks = Mutex<[(Int, Int)]>([])
        pool.run(chunks: 7) { t, c in chunks.withLock { $0.append((t, c)) } }
        XCTAssertEqual(chunks.withLock { $0.map(\.0) }, Array(repeating: 0, count: 7))
        XCTAssertEqual(chunks.withLock { $0.map(\.1) }, Array(0..<7))
        XCTAssertEqual(pool.stallSeconds, 0)
        pool.runsSolo = false
        let after = Mutex<Set<Int>>([])
        for _ in 0..<200 { pool.parallelFor(64) { t, _ in after.withLock { _ = $0.insert(t) }; usleep(50) } }
        XCTAssertGreaterThan(after.withLock { $0.count }, 1, "workers woke from the solo spell and joined")
    }

    /// Creating a pool of N adds exactly N−1 threads, and no region ever adds more.
    func testThreadCapHolds() {
        let before = threadCount()
        var peak = before
        do {
            let pool = ThreadPool(threads: 4)
            XCTAssertEqual(threadCount(), before + 3)
            let seen = Mutex<Int>(peak)
            for i in 0..<2000 {
                pool.run(chunks: 16) { _, c in
                    if c == 0 && i % 100 == 0 { let n = threadCount(); seen.withLock { $0 = max($0, n) } }
                }
            }
            peak = seen.withLock { $0 }
            XCTAssertEqual(peak, before + 3)
            XCTAssertEqual(threadCount(), before + 3)
        }
        // deinit joins the workers
        XCTAssertEqual(threadCount(), before)
    }
#endif

    /// Regions from concurrent callers never overlap: at most `threadCount` chunks at once.
    func testConcurrentRunCallersAreSerialised() {
        let pool = ThreadPool(threads: 2)
        let inside = Atomic<Int>(0)
        let overlaps = Atomic<Int>(0)
        let total = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<200 {
                pool.run(chunks: 5) { _, _ in
                    if inside.add(1, ordering: .sequentiallyConsistent).newValue > pool.threadCount { overlaps.add(1, ordering: .relaxed) }
                    total.add(1, ordering: .relaxed)
                    for _ in 0..<50 { _ = inside.load(ordering: .relaxed) }
                    inside.subtract(1, ordering: .sequentiallyConsistent)
                }
            }
        }
        XCTAssertEqual(overlaps.load(ordering: .relaxed), 0)
        XCTAssertEqual(total.load(ordering: .relaxed), 4 * 200 * 5)
    }

    /// The recoverable region's scratch check rests on `largestChunkUnits`: it is the longest
    /// chunk `chunk` cuts, for every shape.
    func testLargestChunkUnitsIsTheLongestChunk() {
        for threads in 2...4 {
            for units in 1...300 {
                for taper in [false, true] {
                    let n = ThreadPool.chunkCount(units, granule: 1, threads: threads, taper: taper)
                    let longest = (0..<n).map { ThreadPool.chunk(units, part: $0, threads: threads, taper: taper).count }.max()!
                    XCTAssertEqual(ThreadPool.largestChunkUnits(units, threads: threads, taper: taper), longest,
                                   "units \(units) threads \(threads) taper \(taper)")
                }
            }
        }
    }

    /// A float matrix W (rows x cols), its input x (tokens x cols) and W·x by the reference.
    private struct Product {
        let rows = 64, cols = 32, tokens = 3
        let w: UnsafeMutablePointer<Float>
        let matrix: WeightMatrix
        init(seed: Float) throws {
            w = .allocate(capacity: rows * cols)
            for i in 0..<rows * cols { w[i] = Float((i * 7) % 13) - 6 + seed }
            matrix = try WeightMatrix(base: UnsafeRawPointer(w), type: .f32, rows: rows, cols: cols)
        }
        func reference(_ x: UnsafePointer<Float>) -> [Float] {
            var y = [Float](repeating: 0, count: tokens * rows)
            y.withUnsafeMutableBufferPointer {
                ReferenceKernels.matmulFloat(matrix, x, xStride: cols, tokens: tokens, rows: 0..<rows, y: $0.baseAddress!, yStride: rows)
            }
            return y
        }
    }

    /// y = W·x as a recoverable region: the caller computes in place, workers into scratch
    /// and commit by copying.
    private func recoverableProduct(_ pool: ThreadPool, _ m: Product, _ x: UnsafePointer<Float>, _ act: Q8Activations,
                                    scratch: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                    commits: borrowing Atomic<Int>) {
        let chunks = MatmulChunks(m.matrix, act: act, input: x, tokens: m.tokens, scratch: scratch, scratchPerThread: 4096)
        pool.parallelFor(m.rows, granule: 4, taper: true, recoverable: chunks, commit: { r, s in
            commits.add(1, ordering: .relaxed)
            for t in 0..<m.tokens { (y + t * m.rows + r.lowerBound).update(from: s + t * r.count, count: r.count) }
        }, direct: { r in
            ReferenceKernels.matmulFloat(m.matrix, x, xStride: m.cols, tokens: m.tokens, rows: r, y: y, yStride: m.rows)
        })
    }

    private final class HeldChunk: Sendable {
        let claimed = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let holding = Atomic<Bool>(true)
    }

    /// A worker descheduled in the middle of a chunk of a recoverable region (held here in
    /// the hook the pool calls once it has claimed one) does not hold the region up: the
    /// caller takes the chunk over and the region ends with every row right. When the worker
    /// runs again, regions later, it computes the old chunk and finds it no longer its own: it
    /// commits nothing, so the rows a later region wrote stay as that region left them.
    func testDescheduledWorkersChunkIsTakenOverAndNeverLandsLate() throws {
        let held = HeldChunk()
        let hooks = ThreadPool.Hooks(beforeChunk: { _, _ in
            if held.holding.exchange(false, ordering: .acquiringAndReleasing) {
                held.claimed.signal()
                held.release.wait()
            }
        })
        let pool = ThreadPool(threads: 2, hooks: hooks)
        let m = try Product(seed: 0)
        defer { m.w.deallocate() }
        let act = Q8Activations(capacityTokens: 1, capacityCols: 32)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 4096)
        let xa = UnsafeMutablePointer<Float>.allocate(capacity: m.tokens * m.cols)
        let xb = UnsafeMutablePointer<Float>.allocate(capacity: m.tokens * m.cols)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: m.tokens * m.rows)
        defer { for p in [scratch, xa, xb, y] { p.deallocate() } }
        for i in 0..<m.tokens * m.cols { xa[i] = Float(i % 5) - 2; xb[i] = Float(i % 3) + 1 }
        let commits = Atomic<Int>(0)

        // Until the worker claims a chunk and is held there (it may find the region over
        // before it joins; then the next one).
        var regions = 0
        repeat {
            y.initialize(repeating: .nan, count: m.tokens * m.rows)
            recoverableProduct(pool, m, xa, act, scratch: scratch, into: y, commits: commits)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: y, count: m.tokens * m.rows)), m.reference(xa))
            regions += 1
        } while held.claimed.wait(timeout: .now()) == .timedOut && regions < 10_000
        XCTAssertGreaterThan(pool.takeovers, 0, "the held chunk was taken over")

        // Later regions write other rows there, the worker still held.
        for _ in 0..<3 {
            recoverableProduct(pool, m, xb, act, scratch: scratch, into: y, commits: commits)
        }
        let before = commits.load(ordering: .relaxed)
        held.release.signal()
        pool.quiesce()
        XCTAssertEqual(commits.load(ordering: .relaxed), before, "the late worker committed nothing")
        XCTAssertEqual(Array(UnsafeBufferPointer(start: y, count: m.tokens * m.rows)), m.reference(xb))
        // And the pool goes on as before, the worker taking part again.
        for _ in 0..<50 {
            recoverableProduct(pool, m, xa, act, scratch: scratch, into: y, commits: commits)
            XCTAssertEqual(Array(UnsafeBufferPointer(start: y, count: m.tokens * m.rows)), m.reference(xa))
        }
    }

    /// Recoverable regions under random delays (late joins, slow chunks long enough to be
    /// taken over): every row right in every region, whoever computed it.
    func testRecoverableRegionsAreRightWhateverTheTiming() throws {
        let hooks = ThreadPool.Hooks(
            beforeJoin: { t in if t == 1 { usleep(UInt32.random(in: 0...200)) } },
            beforeChunk: { _, c in if c % 3 == 0 { usleep(UInt32.random(in: 0...400)) } })
        let m = try Product(seed: 1)
        defer { m.w.deallocate() }
        let act = Q8Activations(capacityTokens: 1, capacityCols: 32)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 3 * 4096)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: m.tokens * m.cols)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: m.tokens * m.rows)
        defer { for p in [scratch, x, y] { p.deallocate() } }
        let commits = Atomic<Int>(0)
        for threads in [2, 4] {
            let pool = ThreadPool(threads: threads, hooks: hooks)
            for round in 0..<300 {
                for i in 0..<m.tokens * m.cols { x[i] = Float((i + round) % 7) - 3 }
                y.initialize(repeating: .nan, count: m.tokens * m.rows)
                recoverableProduct(pool, m, x, act, scratch: scratch, into: y, commits: commits)
                XCTAssertEqual(Array(UnsafeBufferPointer(start: y, count: m.tokens * m.rows)), m.reference(x),
                               "\(threads) threads, round \(round)")
            }
            pool.quiesce()
        }
    }
}
