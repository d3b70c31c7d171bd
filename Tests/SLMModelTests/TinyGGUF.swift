import Foundation

/// Writes minimal GGUF v3 files (metadata only, no tensors) so tokenizer and template logic
/// can be tested without the real model.
enum TinyGGUF {
    enum Value {
        case string(String)
        case strings([String])
        case int32s([Int32])
        case uint32(UInt32)
        case bool(Bool)
    }

    static func write(_ kvs: [(String, Value)]) throws -> String {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); d.append(contentsOf: Array(s.utf8)) }
        d.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(0)  // tensors
        u64(UInt64(kvs.count))
        for (k, v) in kvs {
            str(k)
            switch v {
            case .string(let s): u32(8); str(s)
            case .strings(let a): u32(9); u32(8); u64(UInt64(a.count)); a.forEach(str)
            case .int32s(let a): u32(9); u32(5); u64(UInt64(a.count)); a.forEach { u32(UInt32(bitPattern: $0)) }
            case .uint32(let x): u32(4); u32(x)
            case .bool(let b): u32(7); d.append(b ? 1 : 0)
            }
        }
        let path = NSTemporaryDirectory() + "slmd-tiny-\(UUID().uuidString).gguf"
        try d.write(to: URL(fileURLWithPath: path))
        return path
    }
}
