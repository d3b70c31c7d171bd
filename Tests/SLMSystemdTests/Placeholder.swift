import XCTest
@testable import SLMSystemd

final class SLMSystemdPlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
