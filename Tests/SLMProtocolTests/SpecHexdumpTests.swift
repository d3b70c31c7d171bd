import XCTest
@testable import SLMProtocol

/// The worked examples in docs/PROTOCOL.md are the encoder's real output: each block
/// marked `<!-- hexdump: NAME -->` must equal `hexDump` of the frame built here, so the
/// spec cannot drift from the code. On a mismatch the failure prints the block to paste.
final class SpecHexdumpTests: XCTestCase {
    static let specURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/PROTOCOL.md")

    /// The frames the spec shows, by block name.
    static func examples() throws -> [String: [UInt8]] {
        let tokenize = Request(id: 7, .tokenize(TokenizeRequest(text: "Hello")))
        // The error example is what the real request decoder reports for an op it does not know.
        var unknown: ProtocolError?
        do { _ = try Request(payload: Array(#"{"id":8,"op":"translate"}"#.utf8)) } catch { unknown = error }
        return [
            "tokenize-request": tokenize.frame().encode(),
            "tokenize-reply": Reply(id: 7, .tokenize(ids: [19556])).frame().encode(),
            "unknown-op-error": try XCTUnwrap(unknown).errorMessage.frame().encode(),
        ]
    }

    /// Extracts the fenced block following each `<!-- hexdump: NAME -->` marker.
    static func blocks(in spec: String) -> [String: String] {
        var out: [String: String] = [:]
        let lines = spec.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var i = 0
        while i < lines.count {
            let line = lines[i].trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("<!-- hexdump:"), line.hasSuffix("-->") {
                let name = line.dropFirst("<!-- hexdump:".count).dropLast(3).trimmingCharacters(in: .whitespaces)
                var j = i + 1
                while j < lines.count, !lines[j].hasPrefix("```") { j += 1 }
                var body: [String] = []
                j += 1
                while j < lines.count, !lines[j].hasPrefix("```") { body.append(lines[j]); j += 1 }
                out[name] = body.joined(separator: "\n")
                i = j
            }
            i += 1
        }
        return out
    }

    func testSpecHexdumpsEqualEncoderOutput() throws {
        let spec = try String(contentsOf: Self.specURL, encoding: .utf8)
        let blocks = Self.blocks(in: spec)
        let examples = try Self.examples()
        XCTAssertEqual(Set(blocks.keys), Set(examples.keys), "every example is in the spec and vice versa")
        for (name, bytes) in examples.sorted(by: { $0.key < $1.key }) {
            let expected = hexDump(bytes)
            XCTAssertEqual(blocks[name], expected, "docs/PROTOCOL.md block '\(name)' should be:\n\(expected)")
        }
    }

    /// The decoder reads the spec's example frames back, byte by byte.
    func testSpecExamplesDecode() throws {
        let examples = try Self.examples()
        var d = FrameDecoder()
        for byte in examples["tokenize-request"]! { d.feed([byte]) }
        XCTAssertEqual(try Request(frame: XCTUnwrap(try d.next())), Request(id: 7, .tokenize(TokenizeRequest(text: "Hello"))))
        d.feed(examples["unknown-op-error"]!)
        let error = try ServerMessage(frame: XCTUnwrap(try d.next()))
        XCTAssertEqual(error, .error(ErrorMessage(id: 8, code: .unknownType, message: "unknown op 'translate'")))
    }

    func testHexDumpFormat() {
        XCTAssertEqual(hexDump(Array("SLMD".utf8) + [0, 0x7F]), "00000000  53 4c 4d 44 00 7f                                 |SLMD..|\n00000006")
    }
}
