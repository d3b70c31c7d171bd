import XCTest
@testable import SLMProtocol
import SLMTestSupport

final class FrameDecoderTests: XCTestCase {
    /// A few frames of different types and sizes, including an empty payload.
    private let frames: [Frame] = [
        Request(id: 1, .ping).frame(),
        Request(id: "a-long-id", .complete(CompleteRequest(prompt: "Once upon a time, ü → 日本語",
                                                           options: GenerationOptions(maxTokens: 16)))).frame(),
        Frame(type: .event, payload: []),
        Event(id: 7, text: "héllo", tokenCount: 3).frame(),
        Frame(type: FrameType(rawValue: 99), payload: Array(repeating: 0x41, count: 300)),
        ErrorMessage(id: nil, code: .busy, message: "queue full").frame(),
    ]

    private func decodeAll(_ chunks: [[UInt8]], maxPayload: Int = FrameHeader.defaultMaxPayloadLength) throws -> [Frame] {
        var decoder = FrameDecoder(maxPayloadLength: maxPayload)
        var out: [Frame] = []
        for chunk in chunks {
            decoder.feed(chunk)
            XCTAssertLessThanOrEqual(decoder.partialByteCount, FrameHeader.size + maxPayload)
            while let frame = try decoder.next() { out.append(frame) }
        }
        decoder.finish()
        while let frame = try decoder.next() { out.append(frame) }
        XCTAssertEqual(decoder.state, .finished)
        return out
    }

    func testHeaderLayoutIsBigEndian() {
        let bytes = Frame(type: .reply, payload: Array(repeating: 0x20, count: 0x0102)).encode()
        XCTAssertEqual(Array(bytes.prefix(12)), [0x53, 0x4C, 0x4D, 0x44, 1, 2, 0, 0, 0x00, 0x00, 0x01, 0x02])
        XCTAssertEqual(bytes.count, 12 + 0x0102)
    }

    func testWholeStreamAtOnce() throws {
        let stream = frames.flatMap { $0.encode() }
        XCTAssertEqual(try decodeAll([stream]), frames)
    }

    func testByteByByte() throws {
        let stream = frames.flatMap { $0.encode() }
        XCTAssertEqual(try decodeAll(stream.map { [$0] }), frames)
    }

    func testRandomSplitsSeeded() throws {
        let stream = frames.flatMap { $0.encode() }
        for seed in UInt64(1)...200 {
            var rng = TestRNG(seed: seed)
            var chunks: [[UInt8]] = []
            var i = 0
            while i < stream.count {
                let n = Int.random(in: 0...40, using: &rng)  // includes empty feeds
                chunks.append(Array(stream[i..<min(i + n, stream.count)]))
                i += n
            }
            XCTAssertEqual(try decodeAll(chunks), frames, "seed \(seed)")
        }
    }

    func testStateMachineStates() throws {
        var d = FrameDecoder()
        XCTAssertEqual(d.state, .header(received: 0))
        let bytes = Request(id: 1, .ping).frame().encode()
        d.feed(bytes.prefix(5))
        XCTAssertEqual(d.state, .header(received: 5))
        d.feed(bytes[5..<14])
        XCTAssertEqual(d.state, .payload(type: .request, length: bytes.count - 12, received: 2))
        XCTAssertNil(try d.next())
        d.feed(bytes[14...])
        XCTAssertEqual(d.state, .header(received: 0))
        XCTAssertEqual(try d.next(), Request(id: 1, .ping).frame())
        XCTAssertNil(try d.next())
    }

    func testOversizeRefusedFromHeaderAlone() {
        var d = FrameDecoder(maxPayloadLength: 1024)
        d.feed(rawFrame(length: 1025))  // header only: no payload byte is ever fed
        let error = assertProtocolError(.frameTooLarge) { () throws(ProtocolError) in try d.next() }
        XCTAssertEqual(error?.isFatal, true)
        XCTAssertEqual(d.partialByteCount, 0)
        // Exactly at the limit is fine.
        var ok = FrameDecoder(maxPayloadLength: 1024)
        ok.feed(rawFrame(length: 1024))
        XCTAssertNil(try? ok.next())
        XCTAssertEqual(ok.state, .payload(type: .request, length: 1024, received: 0))
    }

    func testOversizeAtDefaultLimitAndMaxLength() {
        var d = FrameDecoder()
        d.feed(rawFrame(length: UInt32(FrameHeader.defaultMaxPayloadLength + 1)))
        assertProtocolError(.frameTooLarge) { () throws(ProtocolError) in try d.next() }
        var e = FrameDecoder()
        e.feed(rawFrame(length: .max))
        assertProtocolError(.frameTooLarge) { () throws(ProtocolError) in try e.next() }
    }

    func testBadMagicIsFatalAtFirstWrongByte() {
        var d = FrameDecoder()
        d.feed(Array("GET / HTTP/1.1\r\n".utf8))
        assertProtocolError(.malformedFrame) { () throws(ProtocolError) in try d.next() }
        var e = FrameDecoder()
        e.feed([0x53, 0x4C, 0x58])  // "SLX": fails at byte 2 without waiting for a header
        let error = assertProtocolError(.malformedFrame) { () throws(ProtocolError) in try e.next() }
        XCTAssertTrue(error?.message.contains("byte 2") ?? false)
    }

    func testBadVersionIsFatal() {
        var d = FrameDecoder()
        d.feed(rawFrame(version: 2, length: 2, payload: Array("{}".utf8)))
        let error = assertProtocolError(.unsupportedVersion) { () throws(ProtocolError) in try d.next() }
        XCTAssertEqual(error?.isFatal, true)
        var z = FrameDecoder()
        z.feed(rawFrame(version: 0, length: 0))
        assertProtocolError(.unsupportedVersion) { () throws(ProtocolError) in try z.next() }
    }

    func testNonZeroFlagsAreFatal() {
        for flags: UInt16 in [0x0001, 0x0100, 0x8000] {
            var d = FrameDecoder()
            d.feed(rawFrame(flags: flags, length: 2, payload: Array("{}".utf8)))
            assertProtocolError(.malformedFrame) { () throws(ProtocolError) in try d.next() }
        }
    }

    func testFailedDecoderStaysFailedAndDropsInput() {
        var d = FrameDecoder()
        d.feed(rawFrame(magic: Array("XXXX".utf8), length: 0))
        let first = assertProtocolError(.malformedFrame) { () throws(ProtocolError) in try d.next() }
        d.feed(Request(id: 1, .ping).frame().encode())  // a valid frame afterwards is not decoded
        XCTAssertEqual(d.partialByteCount, 0)
        let again = assertProtocolError(.malformedFrame) { () throws(ProtocolError) in try d.next() }
        XCTAssertEqual(first, again)
        d.finish()
        assertProtocolError(.malformedFrame) { () throws(ProtocolError) in try d.next() }
    }

    func testFramesBeforeAFatalErrorAreDeliveredFirst() throws {
        var d = FrameDecoder(maxPayloadLength: 64)
        let ping = Request(id: 1, .ping).frame()
        d.feed(ping.encode() + ping.encode() + rawFrame(length: 65))
        XCTAssertEqual(try d.next(), ping)
        XCTAssertEqual(try d.next(), ping)
        assertProtocolError(.frameTooLarge) { () throws(ProtocolError) in try d.next() }
    }

    func testTruncatedFrameAtEOF() {
        let bytes = Request(id: 1, .ping).frame().encode()
        for cut in [1, 11, 12, bytes.count - 1] {
            var d = FrameDecoder()
            d.feed(bytes.prefix(cut))
            XCTAssertNil(try? d.next())
            d.finish()
            let error = assertProtocolError(.malformedFrame) { () throws(ProtocolError) in try d.next() }
            XCTAssertEqual(error?.isFatal, true)
        }
    }

    func testCleanEOF() throws {
        var d = FrameDecoder()
        d.finish()
        XCTAssertNil(try d.next())
        XCTAssertEqual(d.state, .finished)
    }

    func testUnknownFrameTypeIsNotFatal() throws {
        // The framing is intact, so the decoder yields the frame; the receiver answers
        // unknown_type and keeps the connection.
        var d = FrameDecoder()
        d.feed(Frame(type: FrameType(rawValue: 42), payload: Array("{}".utf8)).encode() + Request(id: 2, .ping).frame().encode())
        let odd = try XCTUnwrap(try d.next())
        XCTAssertEqual(odd.type.rawValue, 42)
        assertProtocolError(.unknownType) { () throws(ProtocolError) in try Request(frame: odd) }
        XCTAssertEqual(try Request(frame: XCTUnwrap(try d.next())), Request(id: 2, .ping))
    }
}
