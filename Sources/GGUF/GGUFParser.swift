/// Bounds-checked little-endian reader over the mapped bytes.
///
/// Every read checks `offset + n <= size` with overflow-safe arithmetic before touching
/// memory, so a truncated or hostile file can only produce a `GGUFError`.
struct ByteCursor {
    let base: UnsafeRawPointer
    let size: Int
    var offset: Int

    /// Fails unless `n` more bytes are available.
    func need(_ n: Int, _ field: @autoclosure () -> String) throws(GGUFError) {
        let (end, overflow) = offset.addingReportingOverflow(n)
        if n < 0 || overflow || end > size {
            throw GGUFError(.truncated, field: field(), offset: offset,
                            "needs \(n) bytes but the file has \(max(0, size - offset)) left (file size \(size))")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ field: @autoclosure () -> String) throws(GGUFError) -> T {
        try need(MemoryLayout<T>.size, field())
        let v = base.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    mutating func readCount(_ field: @autoclosure () -> String, elementSize: Int) throws(GGUFError) -> Int {
        let at = offset
        let raw = try read(UInt64.self, field())
        // A count is only plausible if that many minimum-size elements fit in what is left:
        // this check runs before any allocation, so a hostile count cannot exhaust memory.
        let left = UInt64(size - offset)
        if raw > left / UInt64(max(1, elementSize)) {
            throw GGUFError(.tooLarge, field: field(), offset: at,
                            "count \(raw) cannot fit in the \(left) bytes left in the file")
        }
        return Int(raw)
    }

    mutating func readString(_ field: @autoclosure () -> String) throws(GGUFError) -> String {
        let at = offset
        let len = try readCount(field(), elementSize: 1)
        try need(len, field())
        let bytes = UnsafeRawBufferPointer(start: base + offset, count: len)
        guard let s = String(validating: bytes, as: UTF8.self) else {
            throw GGUFError(.badString, field: field(), offset: at, "string of \(len) bytes is not valid UTF-8")
        }
        offset += len
        return s
    }
}

/// The parsed header, metadata and tensor table of a GGUF file.
public struct GGUFHeader: Sendable {
    public let version: UInt32
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensor]
    public let alignment: Int
    /// Absolute file offset of the tensor data section.
    public let dataOffset: Int
}

enum GGUFParser {
    static let magic: UInt32 = 0x4655_4747  // "GGUF" read as little-endian u32
    static let maxDims = 4
    /// Nested arrays deeper than this are refused (ggml writes at most depth 2).
    static let maxArrayDepth = 8

    static func parse(base: UnsafeRawPointer, size: Int) throws(GGUFError) -> GGUFHeader {
        var c = ByteCursor(base: base, size: size, offset: 0)
        let magic = try c.read(UInt32.self, "header.magic")
        guard magic == Self.magic else {
            throw GGUFError(.badMagic, field: "header.magic", offset: 0,
                            "expected 'GGUF', found 0x\(String(magic, radix: 16))")
        }
        let version = try c.read(UInt32.self, "header.version")
        guard version == 2 || version == 3 else {
            throw GGUFError(.unsupportedVersion, field: "header.version", offset: 4,
                            "version \(version); this reader supports 2 and 3")
        }
        // Minimum sizes: a tensor info is at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset);
        // a metadata pair at least 8 (key) + 4 (type) + 1.
        let tensorCount = try c.readCount("header.tensor_count", elementSize: 24)
        let kvCount = try c.readCount("header.metadata_kv_count", elementSize: 13)

        var metadata: [(key: String, value: GGUFValue)] = []
        metadata.reserveCapacity(kvCount)
        var seenKeys = Set<String>()
        for i in 0..<kvCount {
            let keyAt = c.offset
            let key = try c.readString("metadata[\(i)].key")
            guard seenKeys.insert(key).inserted else {
                throw GGUFError(.duplicate, field: "metadata key '\(key)'", offset: keyAt, "key appears twice")
            }
            let typeAt = c.offset
            let rawType = try c.read(UInt32.self, "metadata '\(key)'.type")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw GGUFError(.badValueType, field: "metadata '\(key)'.type", offset: typeAt,
                                "unknown value type \(rawType)")
            }
            let value = try readValue(&c, type: type, field: "metadata '\(key)'", depth: 0)
            metadata.append((key, value))
        }

        var alignment = 32
        if let entry = metadata.first(where: { $0.key == "general.alignment" }) {
            guard case .uint32(let a) = entry.value else {
                throw GGUFError(.invalidValue, field: "metadata 'general.alignment'", offset: -1,
                                "must be uint32, found \(entry.value.type)")
            }
            guard a > 0, a & (a - 1) == 0, a <= 1 << 20 else {
                throw GGUFError(.invalidValue, field: "metadata 'general.alignment'", offset: -1,
                                "alignment \(a) is not a power of two in 1...1048576")
            }
            alignment = Int(a)
        }

        struct RawTensor { let name: String; let dims: [Int]; let type: GGMLType; let offset: Int; let bytes: Int; let infoAt: Int }
        var raws: [RawTensor] = []
        raws.reserveCapacity(tensorCount)
        var seenNames = Set<String>()
        for i in 0..<tensorCount {
            let infoAt = c.offset
            let name = try c.readString("tensor[\(i)].name")
            let field = "tensor '\(name)'"
            guard seenNames.insert(name).inserted else {
                throw GGUFError(.duplicate, field: field, offset: infoAt, "tensor name appears twice")
            }
            let nDimsAt = c.offset
            let nDims = try c.read(UInt32.self, "\(field).n_dims")
            guard nDims >= 1, nDims <= UInt32(maxDims) else {
                throw GGUFError(.invalidValue, field: "\(field).n_dims", offset: nDimsAt, "\(nDims) dimensions; allowed 1...\(maxDims)")
            }
            var dims: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let dimAt = c.offset
                let raw = try c.read(UInt64.self, "\(field).dims[\(d)]")
                guard raw >= 1, raw <= UInt64(Int32.max) else {
                    throw GGUFError(.invalidValue, field: "\(field).dims[\(d)]", offset: dimAt, "dimension \(raw) outside 1...\(Int32.max)")
                }
                let (p, o) = elements.multipliedReportingOverflow(by: Int(raw))
                guard !o, p <= size * 8 else {  // no type packs more than 8 elements per byte
                    throw GGUFError(.tooLarge, field: "\(field).dims", offset: dimAt, "element count overflows or exceeds the file")
                }
                elements = p
                dims.append(Int(raw))
            }
            let typeAt = c.offset
            let rawType = try c.read(UInt32.self, "\(field).type")
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError(.unknownTensorType, field: "\(field).type", offset: typeAt, "unknown ggml type id \(rawType)")
            }
            let (perBlock, blockBytes) = type.blockLayout
            guard dims[0] % perBlock == 0 else {
                throw GGUFError(.invalidValue, field: "\(field).dims[0]", offset: typeAt,
                                "row length \(dims[0]) is not a multiple of the \(type.name) block size \(perBlock)")
            }
            let (bytes, o2) = (elements / perBlock).multipliedReportingOverflow(by: blockBytes)
            guard !o2 else {
                throw GGUFError(.tooLarge, field: field, offset: typeAt, "byte size overflows")
            }
            let offAt = c.offset
            let rawOff = try c.read(UInt64.self, "\(field).offset")
            guard rawOff <= UInt64(size) else {
                throw GGUFError(.badTensorData, field: "\(field).offset", offset: offAt, "offset \(rawOff) beyond the file size \(size)")
            }
            guard Int(rawOff) % alignment == 0 else {
                throw GGUFError(.badTensorData, field: "\(field).offset", offset: offAt, "offset \(rawOff) is not aligned to \(alignment)")
            }
            raws.append(RawTensor(name: name, dims: dims, type: type, offset: Int(rawOff), bytes: bytes, infoAt: infoAt))
        }

        // The data section starts at the next multiple of the alignment.
        let dataOffset = (c.offset + alignment - 1) / alignment * alignment
        guard dataOffset <= size || raws.isEmpty else {
            throw GGUFError(.truncated, field: "data section", offset: c.offset,
                            "data section would start at \(dataOffset), past the end of the file (\(size))")
        }
        let dataSize = size - dataOffset

        var tensors: [GGUFTensor] = []
        tensors.reserveCapacity(raws.count)
        for t in raws {
            let (end, o) = t.offset.addingReportingOverflow(t.bytes)
            guard !o, end <= dataSize else {
                throw GGUFError(.badTensorData, field: "tensor '\(t.name)'", offset: dataOffset + t.offset,
                                "\(t.bytes) bytes at data offset \(t.offset) run past the data section (\(dataSize) bytes): file truncated?")
            }
            tensors.append(GGUFTensor(name: t.name, dims: t.dims, type: t.type, relativeOffset: t.offset,
                                      fileOffset: dataOffset + t.offset, byteCount: t.bytes,
                                      data: base + dataOffset + t.offset))
        }
        // Overlapping tensors mean a corrupt table; a well-formed writer never produces them.
        let sorted = tensors.sorted { $0.relativeOffset < $1.relativeOffset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.relativeOffset + a.byteCount > b.relativeOffset {
            throw GGUFError(.badTensorData, field: "tensor '\(b.name)'", offset: b.fileOffset,
                            "overlaps tensor '\(a.name)' (\(a.byteCount) bytes at \(a.fileOffset))")
        }
        return GGUFHeader(version: version, metadata: metadata, tensors: tensors, alignment: alignment, dataOffset: dataOffset)
    }

    static func readValue(_ c: inout ByteCursor, type: GGUFValueType, field: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try c.read(UInt8.self, field))
        case .int8: return .int8(try c.read(Int8.self, field))
        case .uint16: return .uint16(try c.read(UInt16.self, field))
        case .int16: return .int16(try c.read(Int16.self, field))
        case .uint32: return .uint32(try c.read(UInt32.self, field))
        case .int32: return .int32(try c.read(Int32.self, field))
        case .float32: return .float32(Float(bitPattern: try c.read(UInt32.self, field)))
        case .uint64: return .uint64(try c.read(UInt64.self, field))
        case .int64: return .int64(try c.read(Int64.self, field))
        case .float64: return .float64(Double(bitPattern: try c.read(UInt64.self, field)))
        case .bool:
            let at = c.offset
            let b = try c.read(UInt8.self, field)
            guard b <= 1 else { throw GGUFError(.invalidValue, field: field, offset: at, "bool byte is \(b), not 0 or 1") }
            return .bool(b == 1)
        case .string:
            return .string(try c.readString(field))
        case .array:
            guard depth < maxArrayDepth else {
                throw GGUFError(.invalidValue, field: field, offset: c.offset, "arrays nested deeper than \(maxArrayDepth)")
            }
            let typeAt = c.offset
            let rawType = try c.read(UInt32.self, "\(field).element_type")
            guard let elementType = GGUFValueType(rawValue: rawType) else {
                throw GGUFError(.badValueType, field: "\(field).element_type", offset: typeAt, "unknown value type \(rawType)")
            }
            let count = try c.readCount("\(field).count", elementSize: elementType.minimumSize)
            var values: [GGUFValue] = []
            values.reserveCapacity(count)
            for i in 0..<count {
                values.append(try readValue(&c, type: elementType, field: "\(field)[\(i)]", depth: depth + 1))
            }
            return .array(elementType, values)
        }
    }
}
