import Foundation
import GGUF

/// Writes minimal GGUF files (metadata only, no tensors) so tokenizer and template logic
/// can be tested without the real model, and the server's request handling with a fake
/// engine that still tokenizes for real.
public enum TinyGGUF {
    /// A metadata value.
    public enum Value {
        case string(String)
        case strings([String])
        case int32s([Int32])
        case float32s([Float])
        case uint32(UInt32)
        case bool(Bool)

        public var gguf: GGUFValue {
            switch self {
            case .string(let s): .string(s)
            case .strings(let a): .array(.string, a.map { .string($0) })
            case .int32s(let a): .array(.int32, a.map { .int32($0) })
            case .float32s(let a): .array(.float32, a.map { .float32($0) })
            case .uint32(let x): .uint32(x)
            case .bool(let b): .bool(b)
            }
        }
    }

    /// Writes a file holding `kvs` to a fresh temporary path and returns the path (the
    /// caller removes it).
    public static func write(_ kvs: [(String, Value)]) throws -> String {
        var w = GGUFWriter()
        for (k, v) in kvs { w.set(k, v.gguf) }
        let path = NSTemporaryDirectory() + "slmd-tiny-\(UUID().uuidString).gguf"
        try Data(w.serialized()).write(to: URL(fileURLWithPath: path))
        return path
    }
}
