// Fuzz target "gguf": the GGUF parser over memory and over a real file.
//
// Input: a GGUF file. Checks:
// - GGUFParser.parse over exactly the input's bytes (libFuzzer's buffer, so ASan sees any
//   read past the end) either throws a GGUFError or returns a header whose tensors all lie
//   inside the data section, inside the buffer, without overlapping; every tensor byte is
//   read (first and last byte of each) so a bad pointer shows up;
// - GGUFFile(path:) on the same bytes written to a file agrees with the in-memory parse
//   (same success, same error, same tensors and metadata) and its accessors do not trap;
// - a parsed file written back with GGUFWriter parses again, and writing that once more
//   gives identical bytes (metadata and tensor data survive the round trip).
@testable import GGUF
#if canImport(Glibc)
import Glibc
#endif

private func describe(_ h: GGUFHeader) -> String {
    var s = "v\(h.version) align \(h.alignment) data@\(h.dataOffset) meta \(h.metadata.count):"
    for kv in h.metadata { s += " \(kv.key)=\(kv.value.type)" }
    for t in h.tensors { s += " [\(t.name) \(t.dims) \(t.type) @\(t.fileOffset)+\(t.byteCount)]" }
    return s
}

private func checkHeader(_ h: GGUFHeader, base: UnsafeRawPointer, size: Int) {
    fuzzCheck(h.version == 2 || h.version == 3, "version \(h.version)")
    fuzzCheck(h.alignment > 0 && h.alignment & (h.alignment - 1) == 0, "alignment \(h.alignment)")
    fuzzCheck(h.dataOffset % h.alignment == 0, "data offset \(h.dataOffset) not aligned")
    fuzzCheck(h.tensors.isEmpty || h.dataOffset <= size, "data offset \(h.dataOffset) past size \(size)")
    var ranges: [(Int, Int)] = []
    var checksum: UInt8 = 0
    for t in h.tensors {
        fuzzCheck((1...4).contains(t.dims.count) && t.dims.allSatisfy { $0 >= 1 }, "tensor \(t.name) dims \(t.dims)")
        let (per, bytes) = t.type.blockLayout
        fuzzCheck(t.dims[0] % per == 0, "tensor \(t.name) row \(t.dims[0]) vs block \(per)")
        fuzzCheck(t.byteCount == t.elementCount / per * bytes, "tensor \(t.name) byteCount \(t.byteCount)")
        fuzzCheck(t.fileOffset == h.dataOffset + t.relativeOffset, "tensor \(t.name) offsets")
        fuzzCheck(t.relativeOffset % h.alignment == 0, "tensor \(t.name) offset \(t.relativeOffset) unaligned")
        fuzzCheck(t.fileOffset >= 0 && t.fileOffset + t.byteCount <= size, "tensor \(t.name) outside the file")
        fuzzCheck(t.data == base + t.fileOffset, "tensor \(t.name) data pointer")
        fuzzCheck(t.rowCount * t.dims[0] == t.elementCount, "tensor \(t.name) rowCount")
        if t.byteCount > 0 {
            checksum ^= t.data.load(as: UInt8.self)
            checksum ^= t.data.load(fromByteOffset: t.byteCount - 1, as: UInt8.self)
            fuzzCheck(t.rowBytes * t.rowCount == t.byteCount, "tensor \(t.name) rowBytes \(t.rowBytes)")
        }
        ranges.append((t.fileOffset, t.fileOffset + t.byteCount))
    }
    ranges.sort { $0.0 < $1.0 }
    for (a, b) in zip(ranges, ranges.dropFirst()) {
        fuzzCheck(a.1 <= b.0, "overlapping tensors \(a) \(b)")
    }
    var keys = Set<String>()
    for kv in h.metadata {
        fuzzCheck(keys.insert(kv.key).inserted, "duplicate metadata key \(kv.key)")
        _ = kv.value.intValue
        _ = kv.value.floatValue
        _ = kv.value.stringValue
        _ = kv.value.boolValue
        _ = kv.value.arrayValue
    }
    _ = checksum
}

/// The header written back by GGUFWriter (same version, alignment, metadata order, tensors).
private func rewrite(_ h: GGUFHeader) -> [UInt8] {
    var w = GGUFWriter()
    w.version = h.version
    w.alignment = h.alignment
    for kv in h.metadata { w.set(kv.key, kv.value) }
    for t in h.tensors {
        let data = Array(UnsafeRawBufferPointer(start: t.data, count: t.byteCount))
        w.addTensor(t.name, dims: t.dims, type: t.type, data: data)
    }
    return w.serialized()
}

private func parseBytes(_ bytes: [UInt8]) -> Result<GGUFHeader, GGUFError> {
    bytes.withUnsafeBytes { buf in
        // GGUFWriter output always has a header, so the buffer is never empty.
        guard let base = buf.baseAddress else { fuzzFail("GGUFWriter wrote nothing") }
        return Result { () throws(GGUFError) in try GGUFParser.parse(base: base, size: buf.count) }
    }
}

private func sameMetadata(_ a: GGUFHeader, _ b: GGUFHeader) -> Bool {
    // Bitwise via the writer: NaN floats compare unequal with ==.
    var wa = GGUFWriter(), wb = GGUFWriter()
    for kv in a.metadata { wa.set(kv.key, kv.value) }
    for kv in b.metadata { wb.set(kv.key, kv.value) }
    return a.metadata.map(\.key) == b.metadata.map(\.key) && wa.serialized() == wb.serialized()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let base = UnsafeRawPointer(data)

    // 1. Over memory: exactly the fuzzer's buffer.
    let inMemory = Result { () throws(GGUFError) in try GGUFParser.parse(base: base, size: size) }
    if case .success(let h) = inMemory { checkHeader(h, base: base, size: size) }
    if case .failure(let e) = inMemory { _ = e.description }

    // 2. Over a file.
    let path = fuzzScratchDir + "/input.gguf"
    fuzzWriteFile(path, UnsafeBufferPointer(start: data, count: size))
    do {
        let file = try GGUFFile(path: path)
        guard case .success(let h) = inMemory else {
            fuzzFail("GGUFFile accepted what the in-memory parse refused: \(inMemory)")
        }
        checkHeader(file.header, base: file.tensors.first.map { $0.data - $0.fileOffset } ?? base, size: file.size)
        fuzzCheck(file.size == size, "GGUFFile size \(file.size) != \(size)")
        fuzzCheck(describe(file.header) == describe(h), "file and memory parses differ:\n \(describe(file.header))\n \(describe(h))")
        fuzzCheck(sameMetadata(file.header, h), "file and memory metadata differ")
        for t in file.tensors {
            fuzzCheck(file.tensor(named: t.name)?.fileOffset == t.fileOffset, "tensor(named: \(t.name)) lookup")
            fuzzCheck(memcmp(t.data, base + t.fileOffset, t.byteCount) == 0, "tensor \(t.name) bytes differ from the input")
            file.touchPages(t.data, byteCount: t.byteCount)
        }
        for kv in h.metadata {
            fuzzCheck(file[kv.key] != nil, "file[\(kv.key)] missing")
            _ = try? file.int(kv.key)
            _ = try? file.float(kv.key)
            _ = try? file.string(kv.key)
            _ = try? file.stringArray(kv.key)
            _ = try? file.intArray(kv.key)
        }
        _ = try? file.int("general.alignment")
        _ = try? file.string("general.architecture")
        file.touchAllPages()
    } catch {
        if case .failure(let e) = inMemory {
            // Below 8 bytes GGUFFile refuses before parsing, with its own message.
            fuzzCheck(size < 8 || e.description == error.description, "file error \(error) vs memory error \(e)")
        } else {
            fuzzFail("GGUFFile refused what the in-memory parse accepted: \(error)")
        }
    }

    // 3. Writer round trip.
    if case .success(let h) = inMemory {
        let once = rewrite(h)
        switch parseBytes(once) {
        case .failure(let e):
            fuzzFail("GGUFWriter output of a parsed file does not parse: \(e)\n \(describe(h))")
        case .success(let h2):
            fuzzCheck(sameMetadata(h, h2), "metadata changed through GGUFWriter")
            fuzzCheck(h2.tensors.map(\.name) == h.tensors.map(\.name), "tensor names changed through GGUFWriter")
            for (a, b) in zip(h.tensors, h2.tensors) {
                fuzzCheck(a.dims == b.dims && a.type == b.type && a.byteCount == b.byteCount, "tensor \(a.name) changed")
                fuzzCheck(memcmp(a.data, b.data, a.byteCount) == 0, "tensor \(a.name) data changed through GGUFWriter")
            }
            let twice = rewrite(h2)
            fuzzCheck(twice == once, "GGUFWriter is not idempotent on its own output")
        }
    }
    return 0
}
