import GGUF

/// Why a model could not be loaded or run. Each case says which file, key or tensor.
public struct ModelError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// LLaMA hyperparameters, read from the GGUF's `llama.*` metadata.
public struct ModelConfig: Sendable, Equatable {
    public var architecture: String
    public var name: String
    /// Model width (`llama.embedding_length`).
    public var embeddingLength: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var feedForwardLength: Int
    public var vocabSize: Int
    /// Context the model was trained for; the runtime context is chosen separately.
    public var trainedContextLength: Int
    public var ropeFreqBase: Float
    /// Leading dimensions of each head that are rotated.
    public var ropeDimensionCount: Int
    public var rmsEpsilon: Float

    public var headDim: Int { embeddingLength / headCount }
    /// Width of one token's K (or V) across all KV heads.
    public var kvDim: Int { kvHeadCount * headDim }
    /// Query heads per KV head (grouped-query attention).
    public var groupSize: Int { headCount / kvHeadCount }

    public init(gguf: GGUFFile) throws(ModelError) {
        do {
            architecture = try gguf.string("general.architecture")
            guard architecture == "llama" else {
                throw ModelError("\(gguf.path): architecture '\(architecture)' is not supported (supported: llama)")
            }
            let a = architecture
            name = (try? gguf.string("general.name")) ?? "unnamed"
            embeddingLength = try gguf.int("\(a).embedding_length")
            layerCount = try gguf.int("\(a).block_count")
            headCount = try gguf.int("\(a).attention.head_count")
            kvHeadCount = (try? gguf.int("\(a).attention.head_count_kv")) ?? headCount
            feedForwardLength = try gguf.int("\(a).feed_forward_length")
            trainedContextLength = try gguf.int("\(a).context_length")
            ropeFreqBase = (try? gguf.float("\(a).rope.freq_base")) ?? 10_000
            rmsEpsilon = try gguf.float("\(a).attention.layer_norm_rms_epsilon")
            guard headCount > 0, embeddingLength % headCount == 0 else {
                throw ModelError("\(gguf.path): embedding_length \(embeddingLength) is not divisible by head_count \(headCount)")
            }
            ropeDimensionCount = (try? gguf.int("\(a).rope.dimension_count")) ?? (embeddingLength / headCount)
            guard let embd = gguf.tensor(named: "token_embd.weight"), embd.dims.count == 2 else {
                throw ModelError("\(gguf.path): tensor 'token_embd.weight' is missing or not 2-D")
            }
            vocabSize = embd.dims[1]
        } catch let e as GGUFError {
            throw ModelError("\(gguf.path): \(e)")
        } catch let e as ModelError {
            throw e
        } catch {
            throw ModelError("\(gguf.path): \(error)")
        }
        try validate(path: gguf.path)
    }

    /// Builds a config directly (tests, synthetic models).
    public init(embeddingLength: Int, layerCount: Int, headCount: Int, kvHeadCount: Int, feedForwardLength: Int,
                vocabSize: Int, trainedContextLength: Int = 2048, ropeFreqBase: Float = 10_000,
                ropeDimensionCount: Int? = nil, rmsEpsilon: Float = 1e-5) {
        architecture = "llama"
        name = "synthetic"
        self.embeddingLength = embeddingLength
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.feedForwardLength = feedForwardLength
        self.vocabSize = vocabSize
        self.trainedContextLength = trainedContextLength
        self.ropeFreqBase = ropeFreqBase
        self.ropeDimensionCount = ropeDimensionCount ?? embeddingLength / headCount
        self.rmsEpsilon = rmsEpsilon
    }

    func validate(path: String) throws(ModelError) {
        func check(_ ok: Bool, _ what: String) throws(ModelError) {
            if !ok { throw ModelError("\(path): \(what)") }
        }
        try check(layerCount > 0 && layerCount <= 1024, "block_count \(layerCount) out of range")
        // Checked before anything divides by them or multiplies them into buffer sizes:
        // the values come from the (untrusted) model file.
        try check(headCount > 0 && headCount <= 1024, "head_count \(headCount) out of range 1...1024")
        try check(embeddingLength > 0 && embeddingLength <= 1 << 16 && embeddingLength % headCount == 0,
                  "embedding_length \(embeddingLength) must be in 1...65536 and a multiple of head_count \(headCount)")
        try check(feedForwardLength > 0 && feedForwardLength <= 1 << 18, "feed_forward_length \(feedForwardLength) out of range")
        try check(vocabSize <= 1 << 20, "vocabulary of \(vocabSize) tokens is above 1048576")
        try check(trainedContextLength > 0 && trainedContextLength <= 1 << 24, "context_length \(trainedContextLength) out of range")
        try check(kvHeadCount > 0 && kvHeadCount <= headCount && headCount % kvHeadCount == 0, "head_count \(headCount) is not a multiple of head_count_kv \(kvHeadCount)")
        try check(headDim % 2 == 0 && headDim <= 512, "head dimension \(headDim) must be even and at most 512")
        try check(ropeDimensionCount > 0 && ropeDimensionCount <= headDim && ropeDimensionCount % 2 == 0,
                  "rope.dimension_count \(ropeDimensionCount) must be even and at most the head dimension \(headDim)")
        try check(embeddingLength % 32 == 0 && feedForwardLength % 32 == 0,
                  "embedding_length and feed_forward_length must be multiples of 32")
        try check(rmsEpsilon > 0 && rmsEpsilon < 1, "layer_norm_rms_epsilon \(rmsEpsilon) out of range")
        try check(ropeFreqBase > 0, "rope.freq_base \(ropeFreqBase) must be positive")
        try check(vocabSize > 0, "empty vocabulary")
    }
}
