import XCTest
@testable import SLMProtocol

final class SLMProtocolPlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
