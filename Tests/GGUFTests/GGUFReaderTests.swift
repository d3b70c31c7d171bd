import Foundation
import XCTest
@testable import GGUF

/// Writes `bytes` to a fresh temporary file and returns its path.
func writeTemp(_ bytes: [UInt8], name: String = "t.gguf") -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-gguf-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent(name).path
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

/// A small file with every metadata type, nested arrays and one tensor of each type.
func sampleWriter() -> GGUFWriter {
    var w = GGUFWriter()
    w.set("general.architecture", .string("llama"))
    w.set("u8", .uint8(200)); w.set("i8", .int8(-5)); w.set("u16", .uint16(60000)); w.set("i16", .int16(-300))
    w.set("u32", .uint32(4_000_000_000)); w.set("i32", .int32(-7)); w.set("f32", .float32(1.5)); w.set("b", .bool(true))
    w.set("s", .string("héllo ✓")); w.set("u64", .uint64(1 << 40)); w.set("i64", .int64(-(1 << 40))); w.set("f64", .float64(2.25))
    w.set("arr", .array(.int32, [.int32(1), .int32(2), .int32(3)]))
    w.set("strs", .array(.string, [.string("a"), .string(""), .string("ccc")]))
    w.set("nested", .array(.array, [.array(.uint8, [.uint8(1)]), .array(.string, [.string("x")])]))
    w.set("empty", .array(.float32, []))
    w.addTensor("f32", dims: [4, 2], floats: [1, 2, 3, 4, 5, 6, 7, 8])
    w.addTensor("f16", dims: [2], type: .f16, data: [0x00, 0x3C, 0x00, 0xC0])  // 1.0, -2.0
    w.addTensor("q8_0", dims: [32], type: .q8_0, data: [UInt8](repeating: 1, count: 34))
    w.addTensor("q4_0", dims: [64], type: .q4_0, data: [UInt8](repeating: 2, count: 36))
    w.addTensor("q4_1", dims: [32, 3], type: .q4_1, data: [UInt8](repeating: 3, count: 60))
    return w
}

final class GGUFReaderTests: XCTestCase {
    func testRoundTripsEveryValueTypeAndTensorType() throws {
        let path = writeTemp(sampleWriter().serialized())
        let f = try GGUFFile(path: path)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f["u8"], .uint8(200))
        XCTAssertEqual(f["i8"], .int8(-5))
        XCTAssertEqual(f["u16"], .uint16(60000))
        XCTAssertEqual(f["i16"], .int16(-300))
        XCTAssertEqual(f["u32"], .uint32(4_000_000_000))
        XCTAssertEqual(f["i32"], .int32(-7))
        XCTAssertEqual(f["f32"], .float32(1.5))
        XCTAssertEqual(f["b"], .bool(true))
        XCTAssertEqual(try f.string("s"), "héllo ✓")
        XCTAssertEqual(f["u64"], .uint64(1 << 40))
        XCTAssertEqual(f["i64"], .int64(-(1 << 40)))
        XCTAssertEqual(f["f64"], .float64(2.25))
        XCTAssertEqual(try f.intArray("arr"), [1, 2, 3])
        XCTAssertEqual(try f.stringArray("strs"), ["a", "", "ccc"])
        XCTAssertEqual(f["nested"], .array(.array, [.array(.uint8, [.uint8(1)]), .array(.string, [.string("x")])]))
        XCTAssertEqual(f["empty"], .array(.float32, []))
        XCTAssertEqual(f.tensors.map(\.name), ["f32", "f16", "q8_0", "q4_0", "q4_1"])
        let t = try XCTUnwrap(f.tensor(named: "f32"))
        XCTAssertEqual(t.dims, [4, 2])
        XCTAssertEqual(t.rowCount, 2)
        XCTAssertEqual(t.data.loadUnaligned(fromByteOffset: 28, as: Float.self), 8)
        XCTAssertEqual(f.tensor(named: "f16")?.data.loadUnaligned(fromByteOffset: 2, as: UInt16.self), 0xC000)
        XCTAssertEqual(f.tensor(named: "q4_1")?.byteCount, 60)
        XCTAssertEqual(f.tensor(named: "q4_1")?.rowBytes, 20)
        XCTAssertEqual(f.tensor(named: "q4_0")?.byteCount, 36)
        for t in f.tensors { XCTAssertEqual(t.relativeOffset % f.header.alignment, 0) }
        XCTAssertThrowsError(try f.int("s")) { XCTAssertEqual(($0 as? GGUFError)?.kind, .missing) }
        XCTAssertThrowsError(try f.string("absent")) { XCTAssertEqual(($0 as? GGUFError)?.kind, .missing) }
    }

    func testVersion2AndCustomAlignment() throws {
        var w = sampleWriter()
        w.version = 2
        w.alignment = 64
        let f = try GGUFFile(path: writeTemp(w.serialized()))
        XCTAssertEqual(f.version, 2)
        XCTAssertEqual(f.header.alignment, 64)
        XCTAssertEqual(f.header.dataOffset % 64, 0)
        XCTAssertEqual(f.tensor(named: "q8_0")?.data.load(fromByteOffset: 2, as: UInt8.self), 1)
    }

    func expectError(_ bytes: [UInt8], _ kind: GGUFError.Kind, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try GGUFFile(path: writeTemp(bytes)), file: file, line: line) { e in
            guard let g = e as? GGUFError else { return XCTFail("not a GGUFError: \(e)", file: file, line: line) }
            XCTAssertEqual(g.kind, kind, "\(g)", file: file, line: line)
            XCTAssertFalse(g.description.isEmpty)
        }
    }

    func testRejectsBadHeaders() {
        var bytes = sampleWriter().serialized()
        bytes[0] = UInt8(ascii: "X")
        expectError(bytes, .badMagic)
        bytes = sampleWriter().serialized()
        bytes[4] = 1
        expectError(bytes, .unsupportedVersion)
        bytes = sampleWriter().serialized()
        bytes[8...15] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]  // tensor count
        expectError(bytes, .tooLarge)
        bytes = sampleWriter().serialized()
        bytes[16...23] = [0, 0, 0, 0, 0, 0, 0, 1]  // 2^56 metadata entries
        expectError(bytes, .tooLarge)
        expectError([0x47, 0x47, 0x55, 0x46], .truncated)
    }

    func testRejectsBadValuesAndTensors() {
        func with(_ edit: (inout GGUFWriter) -> Void) -> [UInt8] {
            var w = sampleWriter()
            edit(&w)
            return w.serialized()
        }
        expectError(with { $0.set("general.alignment", .uint32(3)) }, .invalidValue)
        expectError(with { $0.set("general.alignment", .string("32")) }, .invalidValue)
        // A tensor table that points past the data: drop the data by truncating.
        let full = sampleWriter().serialized()
        expectError(Array(full.prefix(full.count - 64)), .badTensorData)
        // Duplicate tensor names.
        expectError(with { $0.addTensor("f32", dims: [1], floats: [0]) }, .duplicate)
        // A q4_1 tensor whose row is not a whole number of blocks cannot be built by the
        // writer, so patch the dimension in the bytes instead: find "q4_1" info.
        var bytes = full
        let name = Array("q4_1".utf8)
        let at = (0..<bytes.count - 4).last { Array(bytes[$0..<$0 + 4]) == name }!
        bytes[at + 4 + 4] = 33  // dims[0] = 33
        expectError(bytes, .invalidValue)
        // Unknown tensor type id.
        bytes = full
        bytes[at + 4 + 4 + 16] = 99
        expectError(bytes, .unknownTensorType)
        // Unknown metadata value type: the type of key "u8" follows its 2-byte name.
        bytes = full
        let key = Array("u8".utf8)
        let k = (0..<bytes.count - 2).first { Array(bytes[$0..<$0 + 2]) == key && bytes[$0 - 8] == 2 }!
        bytes[k + 2] = 77
        expectError(bytes, .badValueType)
        // Bad UTF-8 in a string value.
        bytes = full
        let s = Array("héllo".utf8)
        let si = (0..<bytes.count - s.count).first { Array(bytes[$0..<$0 + s.count]) == s }!
        bytes[si + 1] = 0xFF
        expectError(bytes, .badString)
        // Bool that is neither 0 nor 1.
        bytes = full
        let bkey = Array("b".utf8)
        let bi = (8..<bytes.count - 6).first { bytes[$0 - 8] == 1 && bytes[$0 - 7] == 0 && Array(bytes[$0..<$0 + 1]) == bkey && bytes[$0 + 1] == 7 }!
        bytes[bi + 5] = 2
        expectError(bytes, .invalidValue)
    }

    /// Every prefix of a small valid file fails with a typed error (never a crash).
    func testEveryTruncationIsATypedError() {
        let full = sampleWriter().serialized()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-trunc-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("t.gguf").path
        var failures = 0
        // The last tensor's padding is optional, so prefixes that keep all tensor bytes parse.
        let lastEnd = full.count - ((32 - 60 % 32) % 32)
        for n in 0..<lastEnd {
            _ = FileManager.default.createFile(atPath: path, contents: Data(full.prefix(n)))
            do {
                _ = try GGUFFile(path: path)
                XCTFail("prefix of \(n) bytes parsed")
            } catch {
                failures += 1
            }
        }
        XCTAssertEqual(failures, lastEnd)
    }

    func testEmptyAndMissingFiles() {
        expectError([], .truncated)
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) { XCTAssertEqual(($0 as? GGUFError)?.kind, .io) }
        XCTAssertThrowsError(try GGUFFile(path: "/")) { XCTAssertEqual(($0 as? GGUFError)?.kind, .io) }
    }

    func testErrorNamesFieldAndOffset() {
        var bytes = sampleWriter().serialized()
        bytes[4] = 9
        XCTAssertThrowsError(try GGUFFile(path: writeTemp(bytes))) { e in
            let g = e as! GGUFError
            XCTAssertEqual(g.field, "header.version")
            XCTAssertEqual(g.offset, 4)
            XCTAssertTrue(g.description.contains("version 9"), g.description)
        }
    }
}
