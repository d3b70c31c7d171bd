import GGUF
import SLMKernels

/// Views of every weight tensor, pointing straight into the GGUF mapping (nothing copied).
public struct ModelWeights: @unchecked Sendable {
    // @unchecked: the views point into the read-only mapping owned by `file`.

    public struct Layer: @unchecked Sendable {
        public let attnNorm: UnsafePointer<Float>  // [E]
        public let wq: WeightMatrix                 // [E rows][E cols]
        public let wk: WeightMatrix                 // [kvDim][E]
        public let wv: WeightMatrix                 // [kvDim][E]
        public let wo: WeightMatrix                 // [E][E]
        public let ffnNorm: UnsafePointer<Float>    // [E]
        public let wGate: WeightMatrix              // [F][E]
        public let wUp: WeightMatrix                // [F][E]
        public let wDown: WeightMatrix              // [E][F]
    }

    public let tokenEmbedding: WeightMatrix  // [V][E]
    public let layers: [Layer]
    public let outputNorm: UnsafePointer<Float>  // [E]
    /// The output projection; the token embedding when the file has no `output.weight`.
    public let output: WeightMatrix             // [V][E]
    public let outputIsTied: Bool
    /// Keeps the mapping alive as long as the views.
    public let file: GGUFFile

    public init(file: GGUFFile, config c: ModelConfig) throws(ModelError) {
        self.file = file
        let E = c.embeddingLength, F = c.feedForwardLength, KV = c.kvDim, V = c.vocabSize

        func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> WeightMatrix {
            guard let t = file.tensor(named: name) else {
                throw ModelError("\(file.path): tensor '\(name)' is missing")
            }
            guard t.dims == [cols, rows] else {
                throw ModelError("\(file.path): tensor '\(name)' has shape \(t.dims), expected [\(cols), \(rows)]")
            }
            guard let type = WeightType(rawValue: t.type.rawValue) else {
                throw ModelError("\(file.path): tensor '\(name)' has type \(t.type.name); supported: F32, F16, Q4_0, Q4_1, Q8_0")
            }
            do {
                return try WeightMatrix(base: t.data, type: type, rows: rows, cols: cols)
            } catch {
                throw ModelError("\(file.path): tensor '\(name)': \(error)")
            }
        }
        func vector(_ name: String, _ n: Int) throws(ModelError) -> UnsafePointer<Float> {
            guard let t = file.tensor(named: name) else {
                throw ModelError("\(file.path): tensor '\(name)' is missing")
            }
            guard t.dims == [n], t.type == .f32 else {
                throw ModelError("\(file.path): tensor '\(name)' is \(t.type.name) \(t.dims), expected F32 [\(n)]")
            }
            // Tensor data is aligned to general.alignment (≥ 4 in practice); check anyway
            // because we read it as Float directly.
            guard Int(bitPattern: t.data) % MemoryLayout<Float>.alignment == 0 else {
                throw ModelError("\(file.path): tensor '\(name)' is not 4-byte aligned")
            }
            return t.data.assumingMemoryBound(to: Float.self)
        }

        tokenEmbedding = try matrix("token_embd.weight", rows: V, cols: E)
        var layers: [Layer] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            layers.append(Layer(
                attnNorm: try vector(p + "attn_norm.weight", E),
                wq: try matrix(p + "attn_q.weight", rows: E, cols: E),
                wk: try matrix(p + "attn_k.weight", rows: KV, cols: E),
                wv: try matrix(p + "attn_v.weight", rows: KV, cols: E),
                wo: try matrix(p + "attn_output.weight", rows: E, cols: E),
                ffnNorm: try vector(p + "ffn_norm.weight", E),
                wGate: try matrix(p + "ffn_gate.weight", rows: F, cols: E),
                wUp: try matrix(p + "ffn_up.weight", rows: F, cols: E),
                wDown: try matrix(p + "ffn_down.weight", rows: E, cols: F)))
        }
        self.layers = layers
        outputNorm = try vector("output_norm.weight", E)
        if file.tensor(named: "output.weight") != nil {
            output = try matrix("output.weight", rows: V, cols: E)
            outputIsTied = false
        } else {
            output = tokenEmbedding
            outputIsTied = true
        }
    }
}
