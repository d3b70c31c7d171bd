import XCTest
@testable import SLMEngine
import SLMModel

/// What the suggest caches keep, hand out and report for the memory ledger, without a model.
final class SuggestCachesTests: XCTestCase {
    let config = ModelConfig(embeddingLength: 16, layerCount: 1, headCount: 2, kvHeadCount: 1, feedForwardLength: 32,
                             vocabSize: 64)

    /// A cache holding `tokens` (their KV is not computed: only the bookkeeping is tested).
    func cache(_ tokens: [Int32], capacity: Int = 16) -> KVCache {
        let c = KVCache(config: config, capacity: capacity)
        c.count = tokens.count
        return c
    }

    func testBytesAreReportedAndFreedWhenAnotherOwnerArrives() {
        var c = SuggestCaches()
        XCTAssertEqual(c.scope(to: 1), 0, "nothing kept yet")
        let a = cache([1, 2, 3])
        XCTAssertTrue(c.keepBranch(a, tokens: [1, 2, 3]))
        var charged = 0
        let logits = [Float](repeating: 0.5, count: 64)
        logits.withUnsafeBufferPointer { l in c.keepStart([1, 2, 9], l) { charged += $0; return true } }
        XCTAssertEqual(charged, 64 * MemoryLayout<Float>.size)
        XCTAssertEqual(c.bytes, a.bytes + charged)
        XCTAssertEqual(c.scope(to: 1), 0, "the same owner keeps everything")
        XCTAssertEqual(c.scope(to: 2), a.bytes + charged, "another owner frees all of it")
        XCTAssertEqual(c.bytes, 0)
        XCTAssertNil(c.takeBranch(for: [1, 2, 3], contextCount: 2, capacity: 4, keeping: []))
    }

    func testAtMostTheCapIsKeptAndEvictionTakesLogitsFirst() {
        var c = SuggestCaches()
        for i in 0..<SuggestCaches.maxBranchCaches {
            XCTAssertTrue(c.keepBranch(cache([Int32(i)]), tokens: [Int32(i)]))
        }
        XCTAssertFalse(c.keepBranch(cache([99]), tokens: [99]), "the caller releases what is not kept")
        var charges = 0
        let logits = [Float](repeating: 0, count: 64)
        for i in 0..<(SuggestCaches.maxBranchStarts + 3) {
            logits.withUnsafeBufferPointer { l in c.keepStart([Int32(i)], l) { _ in charges += 1; return true } }
        }
        XCTAssertEqual(charges, SuggestCaches.maxBranchStarts, "past the cap the oldest row is reused, not charged")
        // A row the budget refuses is not kept.
        var refused = SuggestCaches()
        logits.withUnsafeBufferPointer { l in refused.keepStart([1], l) { _ in false } }
        XCTAssertEqual(refused.bytes, 0)

        let row = 64 * MemoryLayout<Float>.size
        for _ in 0..<SuggestCaches.maxBranchStarts { XCTAssertEqual(c.evictOne(), row) }
        XCTAssertEqual(c.evictOne(), cache([0]).bytes, "then the branch caches")
    }

    func testABranchStartNeedsTheLogitsAndACacheHoldingTheContext() {
        var c = SuggestCaches()
        let context: [Int32] = [5, 6, 7]
        let logits = [Float](repeating: 1, count: 64)
        logits.withUnsafeBufferPointer { l in c.keepStart(context, l) { _ in true } }
        XCTAssertNil(c.takeStart(for: context), "no cache holds the context")
        XCTAssertTrue(c.keepBranch(cache(context + [8, 9]), tokens: context + [8, 9]))
        let start = c.takeStart(for: context)
        XCTAssertEqual(start?.logits, logits)
        XCTAssertEqual(start?.cache.count, context.count + 2, "what it held past the context is kept (the typed word's path)")
        XCTAssertEqual(start?.tokens, context + [8, 9])
        XCTAssertEqual(c.bytes, 0, "both were taken out")
    }

    func testTheLongestSharedPrefixIsTakenButNotACurrentFirstTokensCache() {
        var c = SuggestCaches()
        XCTAssertTrue(c.keepBranch(cache([1, 2]), tokens: [1, 2]))
        XCTAssertTrue(c.keepBranch(cache([1, 2, 3, 4]), tokens: [1, 2, 3, 4]))
        XCTAssertTrue(c.keepBranch(cache([1, 2, 3, 5], capacity: 4), tokens: [1, 2, 3, 5]))
        // Context [1, 2]; [1, 2, 3, …] starts with first token 3, which is kept for nodes below it.
        let other = c.takeBranch(for: [1, 2, 7], contextCount: 2, capacity: 8, keeping: [3])
        XCTAssertEqual(other?.holds, 2)
        XCTAssertEqual(other?.cache.count, 2)
        // Below token 3 the longest match wins among caches big enough.
        let below = c.takeBranch(for: [1, 2, 3, 4, 6], contextCount: 2, capacity: 8, keeping: [3])
        XCTAssertEqual(below?.holds, 4)
        XCTAssertNil(c.takeBranch(for: [1, 2, 3, 5], contextCount: 2, capacity: 8, keeping: []), "too small")
    }
}
