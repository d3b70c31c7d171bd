import XCTest
@testable import SLMProtocol
import SLMTestSupport

/// Asserts that `body` throws a `ProtocolError` with `code`, and returns it.
@discardableResult
func assertProtocolError<T>(_ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line,
                            _ body: () throws(ProtocolError) -> T) -> ProtocolError? {
    do {
        let value = try body()
        XCTFail("expected \(code.name), got \(value)", file: file, line: line)
        return nil
    } catch {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        return error
    }
}

/// Decodes a request from JSON text.
func request(_ json: String) throws(ProtocolError) -> Request {
    try Request(payload: Array(json.utf8))
}

/// A frame's bytes with the header fields overridden, for malformed-header tests.
func rawFrame(magic: [UInt8] = FrameHeader.magic, version: UInt8 = 1, type: UInt8 = 1, flags: UInt16 = 0,
              length: UInt32, payload: [UInt8] = []) -> [UInt8] {
    magic + [version, type, UInt8(flags >> 8), UInt8(flags & 0xFF),
             UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)] + payload
}
