import Foundation
import XCTest
@testable import GGUF
import SLMTestSupport

/// Truncates and corrupts the real default model: every case must be a typed error (or a
/// valid parse when a flipped byte happens to stay valid), never a crash or a hang.
final class RealFileCorruptionTests: XCTestCase {
    func loadReal() throws -> (Data, GGUFFile) {
        let path = try TestModel.requirePath()
        let f = try GGUFFile(path: path)
        return (try Data(contentsOf: URL(fileURLWithPath: path)), f)
    }

    func testRealFileParses() throws {
        let (_, f) = try loadReal()
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.tensors.count, 272)
        XCTAssertEqual(try f.string("general.architecture"), "llama")
        XCTAssertEqual(try f.stringArray("tokenizer.ggml.tokens").count, 49152)
        XCTAssertEqual(f.tensor(named: "token_embd.weight")?.type, .q8_0)
        XCTAssertEqual(f.tensor(named: "blk.0.attn_q.weight")?.type, .q4_1)
        XCTAssertEqual(f.header.dataOffset, 1_785_664)
    }

    func testTruncationsAtManyOffsets() throws {
        let (data, f) = try loadReal()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-real-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("cut.gguf").path
        // Offsets in the header, inside the vocabulary arrays, around the data offset, in
        // the data section and one byte short of the end.
        var offsets = [0, 3, 4, 7, 8, 15, 16, 23, 24, 100, 1000, 10_000, 100_000, 500_000, 1_000_000, 1_500_000]
        offsets += [f.header.dataOffset - 1, f.header.dataOffset, f.header.dataOffset + 1, 50_000_000, data.count - 1]
        var rng = TestRNG(seed: 45)
        for _ in 0..<20 { offsets.append(Int.random(in: 0..<f.header.dataOffset, using: &rng)) }
        for n in offsets {
            _ = FileManager.default.createFile(atPath: path, contents: data.prefix(n))
            XCTAssertThrowsError(try GGUFFile(path: path), "truncated at \(n)") { e in
                XCTAssertFalse("\(e)".isEmpty, "a typed GGUFError with a message")
            }
        }
    }

    func testByteFlipsInHeaderRegion() throws {
        let (data, f) = try loadReal()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("slmd-flip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("flip.gguf").path
        _ = FileManager.default.createFile(atPath: path, contents: data)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        // Deterministic positions: every byte of the fixed header, then a seeded spread over
        // metadata and the tensor table (the region a reader interprets).
        var positions = Array(0..<24)
        var state: UInt64 = 0x5EED
        for _ in 0..<300 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            positions.append(Int(state >> 33) % f.header.dataOffset)
        }
        // The tensor table is the last ~13 KB before the data: hit it densely.
        for i in stride(from: f.header.dataOffset - 14_000, to: f.header.dataOffset, by: 97) { positions.append(i) }
        var errors = 0, parsed = 0
        for p in positions {
            let original = data[p]
            for flip: UInt8 in [0xFF, 0x80] {
                try handle.seek(toOffset: UInt64(p))
                handle.write(Data([original ^ flip]))
                do {
                    _ = try GGUFFile(path: path)
                    parsed += 1
                } catch {
                    errors += 1  // typed throws: always a GGUFError
                }
                try handle.seek(toOffset: UInt64(p))
                handle.write(Data([original]))
            }
        }
        print("byte flips: \(errors) typed errors, \(parsed) still-valid parses, 0 crashes")
        XCTAssertGreaterThan(errors, 0)
    }
}
