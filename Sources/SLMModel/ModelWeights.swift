#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GGUF
import SLMKernels

/// Where the quantized weight matrices are read from (the `weights_layout` setting).
public enum WeightsLayout: String, Sendable, CaseIterable, CustomStringConvertible {
    /// In place in the file mapping, ggml's row layout: file-backed (RssFile), shared
    /// between processes, reclaimable under memory pressure, nothing copied.
    case mapped
    /// Copied once at load into the layout the active kernel path reads fastest (tile16 on
    /// every SIMD path, see `WeightLayout`), in anonymous memory (RssAnon, about the size
    /// of the weights); the copied ranges of the mapping are dropped. Falls back to
    /// `mapped` on paths that read the row layout fastest anyway.
    case repacked

    public var description: String { rawValue }
}

/// Views of every weight tensor: into the GGUF mapping, or (`repacked`) into a permuted copy.
public struct ModelWeights: @unchecked Sendable {
    // @unchecked: the views point into the read-only mapping owned by `file`, or into
    // `repackedStorage`, written once here and only read afterwards.

    public struct Layer: @unchecked Sendable {
        public let attnNorm: UnsafePointer<Float>  // [E]
        public let wq: WeightMatrix                 // [qDim rows][E cols]
        public let wk: WeightMatrix                 // [kvDim][E]
        public let wv: WeightMatrix                 // [kvDim][E]
        /// Biases added to q, k and v (qwen2 has them; llama.cpp accepts them on every graph).
        public let bq: UnsafePointer<Float>?        // [qDim]
        public let bk: UnsafePointer<Float>?        // [kvDim]
        public let bv: UnsafePointer<Float>?        // [kvDim]
        /// Per-head RMSNorm weights for q and k (qwen3), shared by all heads.
        public let qNorm: UnsafePointer<Float>?     // [D]
        public let kNorm: UnsafePointer<Float>?     // [D]
        public let wo: WeightMatrix                 // [E][qDim]
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
    /// Llama 3.1/3.2's RoPE frequency factors (`rope_freqs.weight`, one per rotated pair, each
    /// dividing that pair's angle as llama.cpp's `freq_factors` do); nil for plain RoPE.
    public let ropeFreqs: UnsafePointer<Float>?  // [ropeDims/2]
    /// Keeps the mapping alive as long as the views.
    public let file: GGUFFile
    /// What was done: `repacked` only if asked for and the kernel path prefers another layout.
    public let layout: WeightsLayout
    /// The permuted copy (`repacked`), kept alive as long as the views.
    let repackedStorage: RepackedStorage?
    /// Addresses (in the mapping) of the tensors that were copied, whose pages were dropped.
    public let repackedSources: Set<Int>
    /// Why the repack cache file could not be used (the copy is then anonymous), or nil.
    public let repackCacheProblem: String?

    /// Bytes the repacked copy holds (0 when mapped).
    public var repackedBytes: Int { repackedStorage?.byteCount ?? 0 }
    /// The cache file the repacked copy is mapped from, if any.
    public var repackCachePath: String? { repackedStorage?.cachePath }
    /// Whether that cache file was reused as it was (nothing repacked at this load).
    public var repackCacheHit: Bool { repackedStorage?.cacheHit ?? false }

    /// Binds every tensor of `file`. With `layout: .repacked` (and a kernel path that prefers
    /// tile16) the quantized matrices are copied into tile16 order: into a file under
    /// `cacheDirectory` named after the model (reused while its header matches, so later
    /// loads map it instead of repacking), or into anonymous memory without a directory or
    /// when the file cannot be written (see `repackCacheProblem`).
    public init(file: GGUFFile, config c: ModelConfig, layout requested: WeightsLayout = .mapped,
                cacheDirectory: String? = nil) throws(ModelError) {
        self.file = file
        let E = c.embeddingLength, F = c.feedForwardLength, KV = c.kvDim, V = c.vocabSize
        let QD = c.qDim, D = c.headDim
        // Every tensor bound, so tensors the graph would not apply can be refused (below).
        var bound: Set<String> = []

        func matrix(_ name: String, rows: Int, cols: Int) throws(ModelError) -> WeightMatrix {
            guard let t = file.tensor(named: name) else {
                throw ModelError("\(file.path): tensor '\(name)' is missing", reason: .missingTensor(name))
            }
            guard t.dims == [cols, rows] else {
                throw ModelError("\(file.path): tensor '\(name)' has shape \(t.dims), expected [\(cols), \(rows)]",
                                 reason: .badTensor(name))
            }
            guard let type = WeightType(rawValue: t.type.rawValue) else {
                throw ModelError("\(file.path): tensor '\(name)' has type \(t.type.name); supported: "
                                 + WeightType.allCases.map(\.description).joined(separator: ", "),
                                 reason: .badTensor(name))
            }
            bound.insert(name)
            do {
                return try WeightMatrix(base: t.data, type: type, rows: rows, cols: cols)
            } catch {
                throw ModelError("\(file.path): tensor '\(name)': \(error)", reason: .badTensor(name))
            }
        }
        func vector(_ name: String, _ n: Int) throws(ModelError) -> UnsafePointer<Float> {
            guard let v = try optionalVector(name, n) else {
                throw ModelError("\(file.path): tensor '\(name)' is missing", reason: .missingTensor(name))
            }
            return v
        }
        /// An F32 vector that may be absent (biases).
        func optionalVector(_ name: String, _ n: Int) throws(ModelError) -> UnsafePointer<Float>? {
            guard let t = file.tensor(named: name) else { return nil }
            guard t.dims == [n], t.type == .f32 else {
                throw ModelError("\(file.path): tensor '\(name)' is \(t.type.name) \(t.dims), expected F32 [\(n)]",
                                 reason: .badTensor(name))
            }
            bound.insert(name)
            // Tensor data is aligned to general.alignment (≥ 4 in practice); check anyway
            // because we read it as Float directly.
            guard Int(bitPattern: t.data) % MemoryLayout<Float>.alignment == 0 else {
                throw ModelError("\(file.path): tensor '\(name)' is not 4-byte aligned")
            }
            return t.data.assumingMemoryBound(to: Float.self)
        }

        var tokenEmbedding = try matrix("token_embd.weight", rows: V, cols: E)
        var layers: [Layer] = []
        for i in 0..<c.layerCount {
            let p = "blk.\(i)."
            layers.append(Layer(
                attnNorm: try vector(p + "attn_norm.weight", E),
                wq: try matrix(p + "attn_q.weight", rows: QD, cols: E),
                wk: try matrix(p + "attn_k.weight", rows: KV, cols: E),
                wv: try matrix(p + "attn_v.weight", rows: KV, cols: E),
                bq: try optionalVector(p + "attn_q.bias", QD),
                bk: try optionalVector(p + "attn_k.bias", KV),
                bv: try optionalVector(p + "attn_v.bias", KV),
                qNorm: c.architecture.hasQKNorm ? try vector(p + "attn_q_norm.weight", D) : nil,
                kNorm: c.architecture.hasQKNorm ? try vector(p + "attn_k_norm.weight", D) : nil,
                wo: try matrix(p + "attn_output.weight", rows: E, cols: QD),
                ffnNorm: try vector(p + "ffn_norm.weight", E),
                wGate: try matrix(p + "ffn_gate.weight", rows: F, cols: E),
                wUp: try matrix(p + "ffn_up.weight", rows: F, cols: E),
                wDown: try matrix(p + "ffn_down.weight", rows: E, cols: F)))
        }
        outputNorm = try vector("output_norm.weight", E)
        var output: WeightMatrix
        if file.tensor(named: "output.weight") != nil {
            output = try matrix("output.weight", rows: V, cols: E)
            outputIsTied = false
        } else {
            output = tokenEmbedding
            outputIsTied = true
        }
        // llama.cpp reads rope_freqs for the llama graph only; elsewhere it is an extra tensor.
        if c.architecture == .llama, let f = try optionalVector("rope_freqs.weight", c.ropeDimensionCount / 2) {
            // A factor divides an angle: zero, negative or non-finite ones would silently turn
            // every position's rotation into NaN or nonsense, so the file is refused instead.
            for i in 0..<c.ropeDimensionCount / 2 where !(f[i].isFinite && f[i] > 0) {
                throw ModelError("\(file.path): tensor 'rope_freqs.weight' has factor \(f[i]) at \(i); expected a finite value > 0",
                                 reason: .badTensor("rope_freqs.weight"))
            }
            ropeFreqs = f
        } else {
            ropeFreqs = nil
        }
        // A tensor the graph does not use (an output bias, a fused attn_qkv,
        // another family's extras) would change the result if llama.cpp applies it: refuse
        // the file by naming it rather than run a different model.
        if let extra = file.tensors.first(where: { !bound.contains($0.name) }) {
            throw ModelError("\(file.path): tensor '\(extra.name)' is not part of slmd's \(c.architecture) graph",
                             reason: .badTensor(extra.name))
        }

        guard requested == .repacked, Kernels.preferredLayout == .tile16 else {
            self.tokenEmbedding = tokenEmbedding
            self.layers = layers
            self.output = output
            self.layout = .mapped
            self.repackedStorage = nil
            self.repackedSources = []
            self.repackCacheProblem = nil
            return
        }

        // Repack every quantized matrix once (the tied output shares the embedding's copy),
        // each at a 64-byte aligned offset so tiles start on cache lines.
        func padded(_ n: Int) -> Int { (n + 63) / 64 * 64 }
        var all: [WeightMatrix] = [tokenEmbedding]
        for l in layers { all += [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown] }
        if !outputIsTied { all.append(output) }
        var offsets: [Int: Int] = [:]  // source address -> offset in the copy
        var plan: [(w: WeightMatrix, offset: Int)] = []
        var digestWords: [Int] = []
        var total = 0
        // Types without a tile16 layout (Q5_K, Q6_K), or without a tile kernel on this path,
        // stay mapped in row layout.
        for w in all where Kernels.prefersTile16(w.type) && offsets[Int(bitPattern: w.base)] == nil {
            offsets[Int(bitPattern: w.base)] = total
            plan.append((w, total))
            digestWords += [Int(bitPattern: w.base) - Int(bitPattern: tokenEmbedding.base), Int(w.type.rawValue),
                            w.rows, w.cols, total]
            total += padded(w.byteCount)
        }
        // Pieces of whole 16-row tiles, up to ~8 MiB each (the cache file's write size), in
        // file order; a matrix's last piece also takes its rows past the last whole tile.
        var pieces: [RepackedStorage.Piece] = []
        for (w, offset) in plan {
            let step = max(16, (8 << 20) / w.rowBytes / 16 * 16)
            var r = 0
            while r < w.rows {
                let end = w.rows - r <= step + w.rows % 16 ? w.rows : r + step
                let rows = r..<end
                pieces.append(.init(offset: offset + r * w.rowBytes, byteCount: rows.count * w.rowBytes) { dst in
                    Kernels.repackTile16(w, rows: rows, into: dst)
                })
                r = end
            }
        }
        var cached: RepackedStorage?
        var problem: String?
        if let dir = cacheDirectory, !dir.isEmpty {
            let name = file.path.split(separator: "/").last.map(String.init) ?? "model"
            do {
                cached = try RepackedStorage(cacheFile: dir + "/" + name + ".tile16", byteCount: total,
                                             source: file.identity, digest: RepackedStorage.digest(digestWords), pieces: pieces)
            } catch {
                problem = error.description
            }
        }
        let storage = cached ?? RepackedStorage(anonymous: total, pieces: pieces)
        func view(_ w: WeightMatrix) -> WeightMatrix {
            guard let offset = offsets[Int(bitPattern: w.base)] else { return w }
            return try! WeightMatrix(base: storage.base + offset, type: w.type, rows: w.rows, cols: w.cols, layout: .tile16)
        }
        // The copy replaces the mapped bytes: drop them from this process's RSS.
        for (w, _) in plan { file.dropPages(w.base, byteCount: w.byteCount) }
        tokenEmbedding = view(tokenEmbedding)
        layers = layers.map { l in
            Layer(attnNorm: l.attnNorm, wq: view(l.wq), wk: view(l.wk), wv: view(l.wv),
                  bq: l.bq, bk: l.bk, bv: l.bv, qNorm: l.qNorm, kNorm: l.kNorm, wo: view(l.wo),
                  ffnNorm: l.ffnNorm, wGate: view(l.wGate), wUp: view(l.wUp), wDown: view(l.wDown))
        }
        output = outputIsTied ? tokenEmbedding : view(output)
        let sources = Set(offsets.keys)
        self.tokenEmbedding = tokenEmbedding
        self.layers = layers
        self.output = output
        self.layout = .repacked
        self.repackedStorage = storage
        self.repackedSources = sources
        self.repackCacheProblem = problem
    }

    /// Brings a file-backed repacked copy into memory (an anonymous one always is).
    func touchRepacked() {
        guard let s = repackedStorage, s.cachePath != nil else { return }
        _ = madvise(s.base, s.byteCount, MADV_WILLNEED)
        var acc: UInt8 = 0
        var o = 0
        while o < s.byteCount { acc ^= s.base.load(fromByteOffset: o, as: UInt8.self); o += 4096 }
        withExtendedLifetime(acc) {}
    }
}
