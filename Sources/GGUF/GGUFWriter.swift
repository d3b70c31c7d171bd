/// Builds a GGUF file in memory: how tests make tiny models and corrupt files, and how
/// tools could write converted models. Writes version 3, little-endian.
public struct GGUFWriter: Sendable {
    public struct TensorEntry: Sendable {
        public let name: String
        public let dims: [Int]
        public let type: GGMLType
        public let data: [UInt8]
    }

    public var version: UInt32 = 3
    public var alignment: Int = 32
    public private(set) var metadata: [(String, GGUFValue)] = []
    public private(set) var tensors: [TensorEntry] = []

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) {
        metadata.removeAll { $0.0 == key }
        metadata.append((key, value))
    }

    /// Adds a tensor; `data` must hold exactly the bytes its type and shape need.
    public mutating func addTensor(_ name: String, dims: [Int], type: GGMLType, data: [UInt8]) {
        let (per, bytes) = type.blockLayout
        precondition(dims[0] % per == 0, "row length \(dims[0]) not a multiple of \(per)")
        precondition(data.count == dims.reduce(1, *) / per * bytes, "tensor \(name): \(data.count) bytes for \(dims) \(type)")
        tensors.append(TensorEntry(name: name, dims: dims, type: type, data: data))
    }

    /// Adds an F32 tensor from floats.
    public mutating func addTensor(_ name: String, dims: [Int], floats: [Float]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(floats.count * 4)
        for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        addTensor(name, dims: dims, type: .f32, data: bytes)
    }

    /// The file's bytes. `general.alignment` is written when not the default 32.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func putString(_ s: String) { put(UInt64(s.utf8.count)); out.append(contentsOf: s.utf8) }
        func putValue(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): put(x)
            case .int8(let x): put(x)
            case .uint16(let x): put(x)
            case .int16(let x): put(x)
            case .uint32(let x): put(x)
            case .int32(let x): put(x)
            case .float32(let x): put(x.bitPattern)
            case .bool(let x): put(UInt8(x ? 1 : 0))
            case .string(let x): putString(x)
            case .uint64(let x): put(x)
            case .int64(let x): put(x)
            case .float64(let x): put(x.bitPattern)
            case .array(let t, let items):
                put(t.rawValue)
                put(UInt64(items.count))
                for i in items { putValue(i) }
            }
        }
        var meta = metadata
        if alignment != 32 && !meta.contains(where: { $0.0 == "general.alignment" }) {
            meta.append(("general.alignment", .uint32(UInt32(alignment))))
        }
        put(UInt32(0x4655_4747))
        put(version)
        put(UInt64(tensors.count))
        put(UInt64(meta.count))
        for (k, v) in meta {
            putString(k)
            put(v.type.rawValue)
            putValue(v)
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        for (t, o) in zip(tensors, offsets) {
            putString(t.name)
            put(UInt32(t.dims.count))
            for d in t.dims { put(UInt64(d)) }
            put(t.type.rawValue)
            put(UInt64(o))
        }
        while out.count % alignment != 0 { out.append(0) }
        for t in tensors {
            out.append(contentsOf: t.data)
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }
}
