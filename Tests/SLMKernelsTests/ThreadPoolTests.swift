import Synchronization
import XCTest
@testable import SLMKernels
#if canImport(Glibc)
import Glibc
#endif

final class ThreadPoolTests: XCTestCase {
    func testChunksPartition() {
        for count in [0, 1, 5, 63, 64, 1000, 1537] {
            for parts in 1...5 {
                for granule in [1, 4, 16] {
                    var next = 0
                    for p in 0..<parts {
                        let r = ThreadPool.chunk(count, part: p, of: parts, granule: granule)
                        XCTAssertEqual(r.lowerBound, next, "count \(count) parts \(parts) granule \(granule)")
                        if !r.isEmpty && r.upperBound != count { XCTAssertEqual(r.upperBound % granule, 0) }
                        next = max(next, r.upperBound)
                    }
                    XCTAssertEqual(next, count)
                }
            }
        }
    }

    func testParallelForCoversEveryIndexOnce() {
        let pool = ThreadPool(threads: 3)
        for count in [0, 1, 2, 7, 100, 4097] {
            let ranges = Mutex<[Range<Int>]>([])
            pool.parallelFor(count, granule: 4) { range in ranges.withLock { $0.append(range) } }
            var hits = [Int](repeating: 0, count: count)
            for r in ranges.withLock({ $0 }) { for i in r { hits[i] += 1 } }
            XCTAssertTrue(hits.allSatisfy { $0 == 1 }, "count \(count)")
            XCTAssertLessThanOrEqual(ranges.withLock { $0.count }, pool.threadCount)
        }
    }

#if os(Linux)
    private func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
    }

    /// Creating a pool of N adds exactly N−1 threads, and no region ever adds more.
    func testThreadCapHolds() {
        let before = threadCount()
        var peak = before
        do {
            let pool = ThreadPool(threads: 4)
            XCTAssertEqual(threadCount(), before + 3)
            for i in 0..<2000 {
                pool.run { t in
                    if t == 0 && i % 100 == 0 { peak = max(peak, threadCount()) }
                }
            }
            XCTAssertEqual(peak, before + 3)
            XCTAssertEqual(threadCount(), before + 3)
        }
        // deinit joins the workers
        XCTAssertEqual(threadCount(), before)
    }
#endif

    /// Regions from concurrent callers never overlap: each runs on every thread, alone.
    func testConcurrentRunCallersAreSerialised() {
        let pool = ThreadPool(threads: 2)
        let inside = Atomic<Int>(0)
        let overlaps = Atomic<Int>(0)
        let total = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<200 {
                pool.run { _ in
                    if inside.add(1, ordering: .sequentiallyConsistent).newValue > pool.threadCount { overlaps.add(1, ordering: .relaxed) }
                    total.add(1, ordering: .relaxed)
                    for _ in 0..<50 { _ = inside.load(ordering: .relaxed) }
                    inside.subtract(1, ordering: .sequentiallyConsistent)
                }
            }
        }
        XCTAssertEqual(overlaps.load(ordering: .relaxed), 0)
        XCTAssertEqual(total.load(ordering: .relaxed), 4 * 200 * pool.threadCount)
    }
}
