import XCTest
@testable import SLMServer

final class SLMServerPlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
