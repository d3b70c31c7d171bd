import Foundation
import GGUF
@testable import SLMModel
@testable import SLMTokenizer

/// Tiny random-weight llama, qwen2 and qwen3 GGUFs, written by the same formula as
/// scripts/make-toy-models (see its docstring, "THE FORMULA"), which recorded llama.cpp's
/// outputs on its own copies in Tests/Fixtures/toy-models/reference.json. Every value is a
/// small integer times a power of two, exact in f16, so both writers produce identical bytes;
/// `digest` lets a test prove it before comparing logits.
enum ToyArchitectures {
    struct Shape {
        let E: Int, H: Int, KVH: Int, D: Int?, F: Int, L: Int
        let tied: Bool, biases: Bool, qkNorm: Bool, ropeFreqs: Bool
        let freqBase: Float, eps: Float, pre: String
        var headDim: Int { D ?? E / H }
    }

    /// Must match ARCHS in scripts/make-toy-models.
    static let shapes: [Architecture: Shape] = [
        .llama: Shape(E: 64, H: 4, KVH: 2, D: nil, F: 96, L: 2, tied: false, biases: false, qkNorm: false,
                      ropeFreqs: true, freqBase: 500_000, eps: 1e-5, pre: "smollm"),
        .qwen2: Shape(E: 64, H: 4, KVH: 2, D: nil, F: 96, L: 2, tied: true, biases: true, qkNorm: false,
                      ropeFreqs: false, freqBase: 1_000_000, eps: 1e-6, pre: "qwen2"),
        .qwen3: Shape(E: 64, H: 4, KVH: 2, D: 32, F: 96, L: 2, tied: false, biases: false, qkNorm: true,
                      ropeFreqs: false, freqBase: 1_000_000, eps: 1e-6, pre: "qwen2"),
    ]

    static func fnv1a<S: Sequence>(_ bytes: S, _ h: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where S.Element == UInt8 {
        var h = h
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    struct LCG {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 11
        }
        /// n - 127 for n = next % 255.
        mutating func centered() -> Int { Int(next() % 255) - 127 }
    }

    enum Kind { case matrix, norm, bias, ropeFreq }

    /// (name, kind, rows, cols) in the order written: tensors() of the script.
    static func tensors(_ s: Shape) -> [(String, Kind, Int, Int)] {
        let V = 2 + 256 + 1, D = s.headDim
        var out: [(String, Kind, Int, Int)] = [("token_embd.weight", .matrix, V, s.E)]
        if s.ropeFreqs { out.append(("rope_freqs.weight", .ropeFreq, 1, D / 2)) }
        for i in 0..<s.L {
            let p = "blk.\(i)."
            out += [(p + "attn_norm.weight", .norm, 1, s.E), (p + "attn_q.weight", .matrix, s.H * D, s.E),
                    (p + "attn_k.weight", .matrix, s.KVH * D, s.E), (p + "attn_v.weight", .matrix, s.KVH * D, s.E)]
            if s.biases {
                out += [(p + "attn_q.bias", .bias, 1, s.H * D), (p + "attn_k.bias", .bias, 1, s.KVH * D),
                        (p + "attn_v.bias", .bias, 1, s.KVH * D)]
            }
            if s.qkNorm { out += [(p + "attn_q_norm.weight", .norm, 1, D), (p + "attn_k_norm.weight", .norm, 1, D)] }
            out += [(p + "attn_output.weight", .matrix, s.E, s.H * D), (p + "ffn_norm.weight", .norm, 1, s.E),
                    (p + "ffn_gate.weight", .matrix, s.F, s.E), (p + "ffn_up.weight", .matrix, s.F, s.E),
                    (p + "ffn_down.weight", .matrix, s.E, s.F)]
        }
        out.append(("output_norm.weight", .norm, 1, s.E))
        if !s.tied { out.append(("output.weight", .matrix, V, s.E)) }
        return out
    }

    static func bytes(model: String, name: String, kind: Kind, rows: Int, cols: Int, type: GGMLType) -> (GGMLType, [UInt8]) {
        var rng = LCG(state: fnv1a(Array("\(model):\(name)".utf8)))
        var out: [UInt8] = []
        func f32(_ x: Float) { withUnsafeBytes(of: x.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        func f16(_ x: Float) { withUnsafeBytes(of: Float16(x).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        let p9: Float = 1.0 / 512, p8: Float = 1.0 / 256
        switch (kind, type) {
        case (.norm, _):
            for _ in 0..<rows * cols { f32(1 + Float(rng.centered()) * p9) }
            return (.f32, out)
        case (.ropeFreq, _):
            for _ in 0..<rows * cols { f32(Float(1 + rng.next() % 8)) }
            return (.f32, out)
        case (.bias, _):
            for _ in 0..<rows * cols { f32(Float(rng.centered()) * p8) }
            return (.f32, out)
        case (.matrix, .f32):
            for _ in 0..<rows * cols { f32(Float(rng.centered()) * p9) }
        case (.matrix, .f16):
            for _ in 0..<rows * cols { f16(Float(rng.centered()) * p9) }
        case (.matrix, .q8_0):
            for _ in 0..<rows * cols / 32 {
                f16(Float(16 + rng.next() % 16) / 16384)
                for _ in 0..<32 { out.append(UInt8(truncatingIfNeeded: rng.centered())) }
            }
        case (.matrix, .q4_0):
            for _ in 0..<rows * cols / 32 {
                f16(Float(16 + rng.next() % 16) / 1024)
                for _ in 0..<16 { out.append(UInt8(rng.next() % 256)) }
            }
        default: fatalError("toy models use F32, F16, Q8_0 or Q4_0, not \(type)")
        }
        return (type, out)
    }

    /// Writes toy model `name` (e.g. "toy-qwen3-q8_0") and returns its path. Tests of
    /// refusals leave out the tensors in `skip` and change the file with `edit` last.
    static func write(name: String, architecture a: Architecture, type: GGMLType, skip: Set<String> = [],
                      edit: (inout GGUFWriter) -> Void = { _ in }) throws -> String {
        let s = shapes[a]!, p = a.rawValue
        var w = GGUFWriter()
        w.set("general.architecture", .string(p))
        w.set("general.name", .string(name))
        w.set("\(p).embedding_length", .uint32(UInt32(s.E)))
        w.set("\(p).block_count", .uint32(UInt32(s.L)))
        w.set("\(p).attention.head_count", .uint32(UInt32(s.H)))
        w.set("\(p).attention.head_count_kv", .uint32(UInt32(s.KVH)))
        if let D = s.D {
            w.set("\(p).attention.key_length", .uint32(UInt32(D)))
            w.set("\(p).attention.value_length", .uint32(UInt32(D)))
        }
        w.set("\(p).feed_forward_length", .uint32(UInt32(s.F)))
        w.set("\(p).context_length", .uint32(1024))
        w.set("\(p).rope.freq_base", .float32(s.freqBase))
        w.set("\(p).attention.layer_norm_rms_epsilon", .float32(s.eps))
        let tokens = ["<|endoftext|>", "<|im_end|>"] + (0..<256).map { ByteLevel.text(forByte: UInt8($0)) } + ["ĠĠ"]
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.pre", .string(s.pre))
        w.set("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) }))
        w.set("tokenizer.ggml.token_type", .array(.int32, ([3, 3] + [Int32](repeating: 1, count: tokens.count - 2)).map { .int32($0) }))
        w.set("tokenizer.ggml.merges", .array(.string, [.string("Ġ Ġ")]))
        w.set("tokenizer.ggml.eos_token_id", .uint32(1))
        for (tname, kind, rows, cols) in tensors(s) where !skip.contains(tname) {
            let (t, data) = bytes(model: name, name: tname, kind: kind, rows: rows, cols: cols, type: type)
            w.addTensor(tname, dims: kind == .matrix ? [cols, rows] : [cols], type: t, data: data)
        }
        edit(&w)
        let path = NSTemporaryDirectory() + "slmd-\(name)-\(UUID().uuidString).gguf"
        try Data(w.serialized()).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// FNV-1a-64 over the file's tensors in name order (name bytes, then data bytes), as the
    /// script records it: equal digests mean llama.cpp ran on these very weights.
    static func digest(_ file: GGUFFile) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in file.tensors.sorted(by: { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }) {
            h = fnv1a(Array(t.name.utf8), h)
            h = fnv1a(UnsafeRawBufferPointer(start: t.data, count: t.byteCount), h)
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
