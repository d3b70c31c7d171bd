import XCTest
@testable import SLMEngine

final class SLMEnginePlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
