import Foundation
import SLMLimits
import SLMTestSupport
import XCTest

/// docs/PROTOCOL.md's request tables against the one limits table (SLMLimits): every bound
/// and default the decoder, the engine and slmctl use is written in the spec's row for its
/// member, so a limit changed in code without the spec (or the reverse) fails here.
final class LimitsSpecTests: XCTestCase {
    func testEverySpecTableRowStatesTheLimitsOfItsMember() throws {
        let spec = try ProtocolSpec.load()
        var checked = 0
        for entry in Limits.all {
            let rows = spec.tableRows(inSection: entry.section).filter { $0.contains("`\(entry.member)`") }
            guard !rows.isEmpty else {
                XCTFail("§\(entry.section) has no table row for `\(entry.member)`")
                continue
            }
            let row = try XCTUnwrap(rows.first { $0.joined(separator: " | ").contains(entry.specText) },
                                    "§\(entry.section) `\(entry.member)`: no row states \(entry.specText): \(rows)")
            if let d = entry.defaultText {
                XCTAssertTrue(row.contains { $0 == d || $0 == "`\(d)`" || $0.hasSuffix("else \(d)") || $0.contains("else \(d) ") },
                              "§\(entry.section) `\(entry.member)`: default \(d) not in \(row)")
            }
            checked += 1
        }
        XCTAssertEqual(checked, Limits.all.count)
    }

    func testRangeTextsAreTheSpecsSpelling() {
        XCTAssertEqual(Limits.seed.rangeText, "0…2^53−1")
        XCTAssertEqual(Limits.tokenID.rangeText, "0…2^31−1")
        XCTAssertEqual(Limits.topP.rangeText, "above 0, at most 1")
        XCTAssertEqual(Limits.maxTokens.rangeText, "1…1048576")
        XCTAssertEqual(Limits.all.first { $0.member == "min_prob" }?.defaultText, "1e-6")
        XCTAssertFalse(Limits.topP.contains(0))
        XCTAssertTrue(Limits.topP.contains(1))
        XCTAssertFalse(Limits.repeatPenalty.contains(10.5))
    }
}
