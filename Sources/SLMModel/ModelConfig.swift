import GGUF

/// Why a model could not be loaded or run. Each case says which file, key or tensor.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, for tests and callers that branch on it (the text is for people).
    public enum Reason: Sendable, Equatable {
        /// `general.architecture` names a family slmd does not run.
        case unsupportedArchitecture(String)
        /// A tensor the architecture needs is absent.
        case missingTensor(String)
        /// A tensor is present with the wrong shape or type, or is one slmd cannot apply.
        case badTensor(String)
        /// A metadata key is absent, mistyped or out of range.
        case badMetadata(String)
        case other
    }

    public let description: String
    public let reason: Reason
    public init(_ description: String, reason: Reason = .other) {
        self.description = description
        self.reason = reason
    }
}

/// The model families slmd runs, by `general.architecture`: the decoder-only transformer
/// with RMSNorm, grouped-query attention, RoPE and a SwiGLU feed-forward, which differ only
/// in the points below (llama.cpp's `src/models/{llama,qwen2,qwen3}.cpp`).
public enum Architecture: String, Sendable, CaseIterable, CustomStringConvertible {
    case llama, qwen2, qwen3

    /// How RoPE pairs a head's dimensions: llama.cpp's rope type for the architecture.
    public var ropeStyle: RopeStyle { self == .llama ? .adjacent : .halves }
    /// Whether Q and K get a per-head RMSNorm (`attn_q_norm`/`attn_k_norm`) before RoPE.
    public var hasQKNorm: Bool { self == .qwen3 }
    /// Whether RoPE must cover the whole head (llama.cpp asserts `n_rot == head dim` for
    /// these graphs; llama may rotate a prefix).
    public var ropesWholeHead: Bool { self != .llama }

    public var description: String { rawValue }

    /// "llama, qwen2, qwen3", for errors.
    public static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Which dimensions of a head RoPE rotates together.
public enum RopeStyle: String, Sendable {
    /// (x[2i], x[2i+1]): llama.cpp's LLAMA_ROPE_TYPE_NORM (llama).
    case adjacent
    /// (x[i], x[i + n/2]): LLAMA_ROPE_TYPE_NEOX (qwen2, qwen3).
    case halves
}

/// Hyperparameters, read only from the GGUF's metadata under the architecture's prefix
/// (`qwen2.embedding_length`, ...).
public struct ModelConfig: Sendable, Equatable {
    public var architecture: Architecture
    public var name: String
    /// Model width (`<arch>.embedding_length`).
    public var embeddingLength: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    /// Width of one attention head (`<arch>.attention.key_length`, else embedding / heads):
    /// qwen3 heads are wider than embedding / heads.
    public var headDim: Int
    public var feedForwardLength: Int
    public var vocabSize: Int
    /// Context the model was trained for; the runtime context is chosen separately.
    public var trainedContextLength: Int
    public var ropeFreqBase: Float
    /// Leading dimensions of each head that are rotated.
    public var ropeDimensionCount: Int
    public var rmsEpsilon: Float

    /// Width of one token's queries across all heads (and of the attention output).
    public var qDim: Int { headCount * headDim }
    /// Width of one token's K (or V) across all KV heads.
    public var kvDim: Int { kvHeadCount * headDim }
    /// Query heads per KV head (grouped-query attention).
    public var groupSize: Int { headCount / kvHeadCount }

    public init(gguf: GGUFFile) throws(ModelError) {
        let path = gguf.path
        func bad(_ key: String, _ why: String) -> ModelError {
            ModelError("\(path): metadata '\(key)' \(why)", reason: .badMetadata(key))
        }
        // A key's value, or nil when absent. A present key of the wrong type is an error,
        // not a silent default: a file that says something odd is refused, not guessed at.
        func optional<T>(_ key: String, _ read: (String) throws(GGUFError) -> T) throws(ModelError) -> T? {
            guard gguf[key] != nil else { return nil }
            do { return try read(key) } catch { throw bad(key, error.detail) }
        }
        func required<T>(_ key: String, _ read: (String) throws(GGUFError) -> T) throws(ModelError) -> T {
            guard let v = try optional(key, read) else { throw bad(key, "is missing") }
            return v
        }
        let archName: String = try required("general.architecture", gguf.string)
        guard let arch = Architecture(rawValue: archName) else {
            throw ModelError("\(path): architecture '\(archName)' is not supported (supported: \(Architecture.supportedList))",
                             reason: .unsupportedArchitecture(archName))
        }
        let a = arch.rawValue
        architecture = arch
        name = try optional("general.name", gguf.string) ?? "unnamed"
        embeddingLength = try required("\(a).embedding_length", gguf.int)
        layerCount = try required("\(a).block_count", gguf.int)
        headCount = try required("\(a).attention.head_count", gguf.int)
        kvHeadCount = try optional("\(a).attention.head_count_kv", gguf.int) ?? headCount
        feedForwardLength = try required("\(a).feed_forward_length", gguf.int)
        trainedContextLength = try required("\(a).context_length", gguf.int)
        ropeFreqBase = try optional("\(a).rope.freq_base", gguf.float) ?? 10_000
        rmsEpsilon = try required("\(a).attention.layer_norm_rms_epsilon", gguf.float)
        // Range-checked before the division (validate() repeats it for synthetic configs).
        guard headCount > 0 && headCount <= Self.maxHeads else {
            throw bad("\(a).attention.head_count", "is \(headCount), expected 1...\(Self.maxHeads)")
        }
        let keyLength = try optional("\(a).attention.key_length", gguf.int)
        let valueLength = try optional("\(a).attention.value_length", gguf.int)
        if let keyLength {
            guard keyLength > 0 && keyLength <= Self.maxHeadDim else {
                throw bad("\(a).attention.key_length", "is \(keyLength), expected 1...\(Self.maxHeadDim)")
            }
            headDim = keyLength
        } else {
            guard embeddingLength % headCount == 0 else {
                throw bad("\(a).embedding_length", "\(embeddingLength) is not a multiple of head_count \(headCount) (and attention.key_length is absent)")
            }
            headDim = embeddingLength / headCount
        }
        // The KV cache holds K and V rows of the same width.
        if let valueLength, valueLength != headDim {
            throw bad("\(a).attention.value_length", "is \(valueLength); slmd needs it equal to the key length \(headDim)")
        }
        ropeDimensionCount = try optional("\(a).rope.dimension_count", gguf.int) ?? headDim
        // Scaled RoPE variants change the angles; refuse them rather than run them wrong.
        if let scaling = try optional("\(a).rope.scaling.type", gguf.string), scaling != "none" {
            throw bad("\(a).rope.scaling.type", "is '\(scaling)'; slmd supports only unscaled RoPE")
        }
        guard let embd = gguf.tensor(named: "token_embd.weight") else {
            throw ModelError("\(path): tensor 'token_embd.weight' is missing", reason: .missingTensor("token_embd.weight"))
        }
        guard embd.dims.count == 2 else {
            throw ModelError("\(path): tensor 'token_embd.weight' has shape \(embd.dims), expected 2-D",
                             reason: .badTensor("token_embd.weight"))
        }
        vocabSize = embd.dims[1]
        try validate(path: path)
    }

    /// Builds a config directly (tests, synthetic models).
    public init(architecture: Architecture = .llama, embeddingLength: Int, layerCount: Int, headCount: Int,
                kvHeadCount: Int, headDim: Int? = nil, feedForwardLength: Int, vocabSize: Int,
                trainedContextLength: Int = 2048, ropeFreqBase: Float = 10_000, ropeDimensionCount: Int? = nil,
                rmsEpsilon: Float = 1e-5) {
        self.architecture = architecture
        name = "synthetic"
        self.embeddingLength = embeddingLength
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim ?? embeddingLength / max(headCount, 1)
        self.feedForwardLength = feedForwardLength
        self.vocabSize = vocabSize
        self.trainedContextLength = trainedContextLength
        self.ropeFreqBase = ropeFreqBase
        self.ropeDimensionCount = ropeDimensionCount ?? self.headDim
        self.rmsEpsilon = rmsEpsilon
    }

    // Caps on hyperparameters. The values come from the (untrusted) model file and are
    // multiplied into buffer sizes, so each is bounded before any product is formed; with
    // these caps every product below fits easily in Int.
    static let maxHeads = 1024
    static let maxHeadDim = 512
    static let maxEmbedding = 1 << 16
    static let maxFeedForward = 1 << 18
    static let maxVocab = 1 << 20
    static let maxLayers = 1024
    static let maxTrainedContext = 1 << 24

    func validate(path: String) throws(ModelError) {
        let a = architecture.rawValue
        func check(_ ok: Bool, _ key: String, _ what: String) throws(ModelError) {
            if !ok { throw ModelError("\(path): \(what)", reason: .badMetadata("\(a).\(key)")) }
        }
        try check(layerCount > 0 && layerCount <= Self.maxLayers, "block_count",
                  "block_count \(layerCount) out of range 1...\(Self.maxLayers)")
        try check(headCount > 0 && headCount <= Self.maxHeads, "attention.head_count",
                  "head_count \(headCount) out of range 1...\(Self.maxHeads)")
        try check(embeddingLength > 0 && embeddingLength <= Self.maxEmbedding && embeddingLength % 32 == 0,
                  "embedding_length", "embedding_length \(embeddingLength) must be a multiple of 32 in 32...\(Self.maxEmbedding)")
        try check(feedForwardLength > 0 && feedForwardLength <= Self.maxFeedForward && feedForwardLength % 32 == 0,
                  "feed_forward_length", "feed_forward_length \(feedForwardLength) must be a multiple of 32 in 32...\(Self.maxFeedForward)")
        try check(vocabSize > 0 && vocabSize <= Self.maxVocab, "vocab_size",
                  "vocabulary of \(vocabSize) tokens (token_embd rows) is outside 1...\(Self.maxVocab)")
        try check(trainedContextLength > 0 && trainedContextLength <= Self.maxTrainedContext, "context_length",
                  "context_length \(trainedContextLength) out of range 1...\(Self.maxTrainedContext)")
        try check(kvHeadCount > 0 && kvHeadCount <= headCount && headCount % kvHeadCount == 0, "attention.head_count_kv",
                  "head_count \(headCount) is not a multiple of head_count_kv \(kvHeadCount)")
        try check(headDim > 0 && headDim % 2 == 0 && headDim <= Self.maxHeadDim, "attention.key_length",
                  "head dimension \(headDim) must be even and in 2...\(Self.maxHeadDim)")
        // The attention output (heads × head dim) is quantized per 32-block for attn_output.
        try check(qDim % 32 == 0, "attention.key_length",
                  "heads × head dimension \(headCount) × \(headDim) must be a multiple of 32")
        try check(ropeDimensionCount > 0 && ropeDimensionCount <= headDim && ropeDimensionCount % 2 == 0,
                  "rope.dimension_count",
                  "rope.dimension_count \(ropeDimensionCount) must be even and at most the head dimension \(headDim)")
        try check(!architecture.ropesWholeHead || ropeDimensionCount == headDim, "rope.dimension_count",
                  "rope.dimension_count \(ropeDimensionCount) must equal the head dimension \(headDim) for \(a)")
        try check(rmsEpsilon > 0 && rmsEpsilon < 1, "attention.layer_norm_rms_epsilon",
                  "layer_norm_rms_epsilon \(rmsEpsilon) out of range (0, 1)")
        try check(ropeFreqBase > 0 && ropeFreqBase.isFinite, "rope.freq_base", "rope.freq_base \(ropeFreqBase) must be positive and finite")
    }
}
