import XCTest
@testable import SLMEngine

/// The expansion memo's bookkeeping, without a model: what `begin` keeps, re-roots or forgets.
final class SuggestMemoTests: XCTestCase {
    /// Records an expansion of (parent, token) whose children are `children`, best first.
    private func record(_ m: inout SuggestMemo, parent: Int32, token: Int32, children: [Int32]) -> Int32 {
        var ids = [Int32](repeating: -1, count: SuggestMemo.width)
        var values = [Float](repeating: -.infinity, count: SuggestMemo.width)
        for (i, c) in children.enumerated() {
            ids[i] = c
            values[i] = Float(-i)
        }
        return ids.withUnsafeMutableBufferPointer { ids in
            values.withUnsafeMutableBufferPointer { values in
                m.record(parent: parent, token: token, topIDs: ids, topValues: values, lse: 1, endLogprob: -2)
            }
        }
    }

    func testContextGrownByAnExpandedPathReRootsAtIt() {
        var m = SuggestMemo()
        let context: [Int32] = [5, 6, 7]
        m.begin(context: context, room: 16)
        XCTAssertEqual(m.root, SuggestMemo.contextRow)
        let a = record(&m, parent: m.root, token: 100, children: [200, 201])
        let ab = record(&m, parent: a, token: 200, children: [300])
        let abc = record(&m, parent: ab, token: 300, children: [400])
        _ = record(&m, parent: m.root, token: 101, children: [202])

        // The same context keeps everything.
        m.begin(context: context, room: 16)
        XCTAssertEqual(m.lookup(parent: m.root, token: 100), a)

        // The user typed token 100: the context grew by the path [100], whose entry is the
        // new root; its subtree is found from there, with the values it was recorded with.
        m.begin(context: context + [100], room: 16)
        XCTAssertEqual(m.root, a)
        XCTAssertEqual(m.lookup(parent: m.root, token: 200), ab)
        XCTAssertNil(m.lookup(parent: m.root, token: 101), "a sibling of the path is not a child of the new root")
        let e = m.entries[Int(ab)]
        XCTAssertEqual(Array(m.tokens[Int(e.start)..<Int(e.start + e.count)]), [300])
        XCTAssertEqual(m.logprobs[Int(e.start)], -1)

        // Grown by two more tokens at once, along the path.
        m.begin(context: context + [100, 200, 300], room: 16)
        XCTAssertEqual(m.root, abc)
        XCTAssertEqual(m.context, context + [100, 200, 300])

        // A path the memo never expanded, a shorter context or another one: start over.
        for other in [context + [100, 200, 300, 999], context + [100], [Int32](arrayLiteral: 1, 2)] {
            _ = record(&m, parent: m.root, token: 998, children: [1])
            m.begin(context: other, room: 16)
            XCTAssertEqual(m.root, SuggestMemo.contextRow, "\(other)")
            XCTAssertTrue(m.entries.isEmpty, "\(other)")
            XCTAssertEqual(m.context, other)
        }
    }

    func testNoRoomForgetsEvenOnAGrownContext() {
        var m = SuggestMemo()
        m.begin(context: [1], room: 1)
        let a = record(&m, parent: m.root, token: 2, children: [3])
        XCTAssertGreaterThanOrEqual(a, 0)
        m.begin(context: [1, 2], room: SuggestMemo.maxEntries)
        XCTAssertEqual(m.root, SuggestMemo.contextRow)
        XCTAssertTrue(m.entries.isEmpty)
    }
}
