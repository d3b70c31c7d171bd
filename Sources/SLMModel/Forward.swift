#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SLMKernels

/// The forward pass of every supported architecture (llama, qwen2, qwen3) and the run state
/// it needs, planned once at creation. The families share one graph; they differ in the
/// optional q/k/v biases (qwen2), the per-head Q/K RMSNorm (qwen3), the head width (qwen3's
/// may differ from E/H) and how RoPE pairs dimensions (`RopeStyle`).
///
/// Shapes: B = tokens in the batch, E = embedding width, QD = query heads × head dim,
/// KV = kv heads × head dim, F = feed-forward width, V = vocabulary, H = query heads,
/// D = head dim, T = context.
/// Every buffer is allocated here; `forward` allocates nothing.
///
/// Numerics follow llama.cpp's CPU backend: RMSNorm with a double-precision sum, the
/// input of every Q4/Q8 matmul quantized per 32-block to int8, RoPE angles built by
/// repeated multiplication, Q rounded to f16 before the QK product against the f16 cache.
public final class Runner: @unchecked Sendable {
    // @unchecked: one forward pass at a time (the caller serialises), threads inside a
    // pass write disjoint rows.
    public let config: ModelConfig
    public let weights: ModelWeights
    public let pool: ThreadPool
    /// Most tokens one forward pass takes.
    public let maxBatch: Int
    /// Most tokens any sequence may hold (bounds the RoPE table).
    public let maxContext: Int
    /// Most batch entries that may ask for logits in one pass (each row is V floats:
    /// 192 KiB for a 49152-token vocabulary, so a daemon keeps this small).
    public let maxLogits: Int

    // Run state. Row-major, one row per batch entry.
    let x: UnsafeMutablePointer<Float>        // [B][E] residual stream
    let xb: UnsafeMutablePointer<Float>       // [B][E] normed input / projection output
    let q: UnsafeMutablePointer<Float>        // [B][QD] queries
    let k: UnsafeMutablePointer<Float>        // [B][KV] keys of this step
    let v: UnsafeMutablePointer<Float>        // [B][KV] values of this step
    let att: UnsafeMutablePointer<Float>      // [B][QD] attention output
    let gate: UnsafeMutablePointer<Float>     // [B][F]
    let up: UnsafeMutablePointer<Float>       // [B][F]
    let logitsBuffer: UnsafeMutablePointer<Float>  // [maxLogits][V] (only rows that asked)
    let act: Q8Activations                    // [B][max(E,QD,F)] int8 copy of the matmul input
    let act2: Q8Activations                   // [B][F] int8 gate (filled while `act` is read)
    let qh: UnsafeMutablePointer<Float>       // [threads][D] f16-rounded query head
    let ropeCos: UnsafeMutablePointer<Float>  // [T][ropeDims/2]
    let ropeSin: UnsafeMutablePointer<Float>  // [T][ropeDims/2]
    let workerScratch: UnsafeMutablePointer<Float>  // [threads - 1][recoverableScratchFloats]

    /// Floats of scratch each worker thread computes a recoverable chunk into
    /// (`ThreadPool.parallelFor(recoverable:)`): 256 KiB, the largest chunk of a 64-token
    /// pass's gate and up (2 x 192 columns x 64 tokens) with room to spare. Regions whose
    /// chunks would not fit run as plain regions.
    static let recoverableScratchFloats = 65536

    /// Bytes of run state (scratch) this runner holds.
    public let scratchBytes: Int

    public init(config: ModelConfig, weights: ModelWeights, pool: ThreadPool, maxBatch: Int, maxContext: Int,
                maxLogits: Int? = nil) {
        precondition(maxBatch > 0 && maxContext > 0)
        self.maxLogits = min(maxBatch, max(1, maxLogits ?? maxBatch))
        self.config = config
        self.weights = weights
        self.pool = pool
        self.maxBatch = maxBatch
        self.maxContext = maxContext
        let B = maxBatch, E = config.embeddingLength, KV = config.kvDim, F = config.feedForwardLength
        let V = config.vocabSize, T = maxContext, D = config.headDim, R = config.ropeDimensionCount / 2
        let QD = config.qDim
        var total = 0
        func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
            total += n * 4
            return ThreadPool.allocateChunked(Float.self, count: n, zero: 0)
        }
        x = buffer(B * E); xb = buffer(B * E); q = buffer(B * QD); k = buffer(B * KV); v = buffer(B * KV)
        att = buffer(B * QD); gate = buffer(B * F); up = buffer(B * F); logitsBuffer = buffer(self.maxLogits * V)
        qh = buffer(pool.threadCount * D)
        ropeCos = buffer(T * R); ropeSin = buffer(T * R)
        workerScratch = buffer(max(1, pool.threadCount - 1) * Self.recoverableScratchFloats)
        act = Q8Activations(capacityTokens: B, capacityCols: max(E, QD, F))
        act2 = Q8Activations(capacityTokens: B, capacityCols: F)
        scratchBytes = total + act.bytes + act2.bytes

        // RoPE angles for every position: theta_i = pos · base^(-2i/dims) / factor_i,
        // accumulated by multiplication as ggml does so the rounding matches; factor_i is
        // rope_freqs[i] (Llama 3.1/3.2), else 1.
        let thetaScale = powf(config.ropeFreqBase, -2 / Float(config.ropeDimensionCount))
        let factors = weights.ropeFreqs
        for pos in 0..<T {
            var theta = Float(pos)
            for i in 0..<R {
                let angle = factors.map { theta / $0[i] } ?? theta
                ropeCos[pos * R + i] = cosf(angle)
                ropeSin[pos * R + i] = sinf(angle)
                theta *= thetaScale
            }
        }
    }

    deinit {
        // A worker a recoverable region left behind may still read the activations and the
        // weights and write its scratch.
        pool.quiesce()
        for p in [x, xb, q, k, v, att, gate, up, logitsBuffer, qh, ropeCos, ropeSin, workerScratch] { p.deallocate() }
    }

    /// Scratch bytes a runner of this shape needs (for memory planning before creating it).
    public static func scratchBytes(config c: ModelConfig, maxBatch B: Int, maxContext T: Int, threads: Int,
                                    maxLogits: Int) -> Int {
        let floats = B * (2 * c.embeddingLength + 2 * c.qDim + 2 * c.kvDim + 2 * c.feedForwardLength)
            + maxLogits * c.vocabSize + threads * c.headDim + T * c.ropeDimensionCount
            + max(1, threads - 1) * recoverableScratchFloats
        return floats * 4 + B * (max(c.embeddingLength, c.qDim, c.feedForwardLength) + c.feedForwardLength) * (1 + 12 / QK)
    }

    /// Logits of the `row`-th batch entry that asked for them, valid until the next pass.
    public func logits(row: Int) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: logitsBuffer + row * config.vocabSize, count: config.vocabSize)
    }

    /// Runs the model over `batch`: appends every token's K/V to its sequence's cache and
    /// computes logits for the entries that asked. Returns the number of logits rows.
    ///
    /// With more than one thread, `governor` times each pass and runs it on this thread alone
    /// when that has been faster for passes of this size (cores shared with another process);
    /// the result is the same either way.
    @discardableResult
    public func forward(_ batch: Batch) throws(ModelError) -> Int {
        // A parallel pass runs with this thread on the pool's CPU 0 when the pool pins its
        // threads (ThreadPool.pinningCaller); a solo pass stays free to run on whichever CPU
        // is idle, which is the point of running solo.
        func run(solo: Bool) throws(ModelError) -> Int {
            guard !solo else {
                pool.releaseCaller()
                return try pass(batch)
            }
            return try pool.pinningCaller { () throws(ModelError) -> Int in try pass(batch) }
        }
        guard adaptsThreads && pool.threadCount > 1 else { return try run(solo: false) }
        let tokens = batch.count
        let solo = governor.shouldRunSolo(tokens: tokens)
        pool.runsSolo = solo
        defer { pool.runsSolo = false }
        let start = monotonicSeconds()
        let stalledBefore = pool.stallSeconds
        let rows = try run(solo: solo)
        // A parallel pass is timed by pinningCaller; the governor weighs only a solo pass's
        // duration. Lost: time this thread was descheduled, or spun waiting for a descheduled
        // worker.
        let seconds = solo ? monotonicSeconds() - start : pool.lastPassSeconds
        let lost = solo ? 0 : pool.lastPassDescheduledSeconds + pool.stallSeconds - stalledBefore
        governor.record(tokens: tokens, solo: solo, seconds: seconds, lost: lost)
        return rows
    }

    /// The most tokens a pass feeds the feed-forward matrices (the bulk of its work) in one
    /// sweep of their weights (`Kernels.tokenTile`), nil when their cost has no such step.
    /// Work that is optional, like suggest's speculative rows, stops there.
    public var rowsPerSweep: Int? { weights.layers.first.flatMap { Kernels.tokenTile(for: $0.wUp) } }

    /// Passes of at least this many tokens cut their matmul and attention regions into
    /// tapering chunks (`ThreadPool.chunk`). Alternating runs at 2 threads on x86-avx2,
    /// tapered against equal chunks: passes of 2 / 4 / 8 / 16 / 64 tokens -10% / -4% / +2% /
    /// +3% / +3%, one-token steps -8%: below this the extra claims cost more than the shorter
    /// end-of-region wait saves.
    static let taperFromTokens = 8

    /// Whether a pass of `tokens` tokens tapers its regions' chunks (`taperFromTokens`).
    @inline(__always)
    private static func tapers(_ tokens: Int) -> Bool { tokens >= taperFromTokens }

    /// Whether a pass of `tokens` tokens runs its matrix products as recoverable regions
    /// (`ThreadPool.parallelFor(recoverable:)`): those of a tapering pass. A shorter pass's
    /// regions last tens of microseconds and on a shared core the governor runs such passes
    /// on one thread; recoverable, decode steps on idle cores measured ~3% slower (tg64 0.97
    /// in two alternating runs at 2 threads, x86-avx2: the workers' extra claims and copies).
    @inline(__always)
    private static func recovers(_ tokens: Int) -> Bool { tapers(tokens) }

    /// Whether `forward` lets `governor` choose between all threads and one per pass (on by
    /// default; off to measure the fixed thread count).
    public var adaptsThreads = true
    /// Per-pass choice between the pool's threads and the calling thread alone.
    public private(set) var governor = ParallelismGovernor()

    private func pass(_ batch: Batch) throws(ModelError) -> Int {
        let B = batch.count
        let c = config
        let E = c.embeddingLength, QD = c.qDim, KV = c.kvDim, V = c.vocabSize  // F: see feedForward()
        let H = c.headCount, D = c.headDim, G = c.groupSize
        guard B > 0 else { return 0 }
        guard B <= maxBatch else { throw ModelError("batch of \(B) tokens exceeds the runner's maximum \(maxBatch)") }
        guard batch.logitCount <= maxLogits else {
            throw ModelError("batch asks for \(batch.logitCount) logits rows; the runner holds \(maxLogits)")
        }
        for i in 0..<B {
            let tok = batch.tokens[i], pos = batch.positions[i], cache = batch.caches[i]!
            guard tok >= 0 && Int(tok) < V else { throw ModelError("token id \(tok) outside the vocabulary (0..<\(V))") }
            guard pos < cache.capacity && pos < maxContext else {
                throw ModelError("position \(pos) exceeds the context (cache \(cache.capacity), runner \(maxContext))")
            }
            // Positions must extend the cache contiguously, counting earlier entries of the
            // same sequence in this batch.
            guard pos <= cache.count else { throw ModelError("position \(pos) skips past the cache's \(cache.count) tokens") }
            if pos == cache.count { cache.count = pos + 1 }
        }

        // Token embedding: x[b] = dequantize(token_embd[token_b])         x: [B][E]
        for b in 0..<B {
            Dequantize.row(weights.tokenEmbedding, Int(batch.tokens[b]), into: x + b * E)
        }

        // Attention output heads are quantized as they finish (a head is whole 32-blocks).
        let fuseAttnQuant = D % QK == 0
        let L = batch.logitCount
        let last = weights.layers.count - 1
        // Rows past the k/v cache writes: all B, except in the last layer (see below).
        var R = B
        // Row r of the pruned last layer is batch entry logitEntry[r] (identity otherwise).
        var pruned = false
        for (l, layer) in weights.layers.enumerated() {
            // ── Attention block ──────────────────────────────────────────────────────
            // xb = rmsnorm(x) · attn_norm, quantized into act                 xb: [B][E]
            normQuantize(rows: B, layer.attnNorm)
            // q = xb·Wqᵀ, k = xb·Wkᵀ, v = xb·Wvᵀ in one parallel region     q: [B][QD], k,v: [B][KV]
            project(Projection(layer.wq, q, QD), Projection(layer.wk, k, KV), Projection(layer.wv, v, KV), input: xb, rows: B)

            // Biases (qwen2), per-head RMSNorm of q and k (qwen3), RoPE on q and k, then k
            // and v go into each sequence's cache as f16. llama.cpp's order: bias, norm, rope.
            parallelRows(B) { b in
                let pos = batch.positions[b]
                let qb = self.q + b * QD, kb = self.k + b * KV, vb = self.v + b * KV
                if let bias = layer.bq { for i in 0..<QD { qb[i] += bias[i] } }
                if let bias = layer.bk { for i in 0..<KV { kb[i] += bias[i] } }
                if let bias = layer.bv { for i in 0..<KV { vb[i] += bias[i] } }
                if let w = layer.qNorm { for h in 0..<H { self.rmsNorm(qb + h * D, count: D, w, into: qb + h * D) } }
                if let w = layer.kNorm { for h in 0..<c.kvHeadCount { self.rmsNorm(kb + h * D, count: D, w, into: kb + h * D) } }
                self.rope(qb, heads: H, position: pos)
                self.rope(self.k + b * KV, heads: c.kvHeadCount, position: pos)
                Kernels.toF16(self.k + b * KV, batch.keyRow(b, layer: l, position: pos, kvDim: KV), count: KV)
                Kernels.toF16(self.v + b * KV, batch.valueRow(b, layer: l, position: pos, kvDim: KV), count: KV)
            }

            // The last layer's attention, output projection and feed-forward block feed only
            // the output norm, which reads only the rows that asked for logits: keep those
            // (their k and v are cached above for every row) and drop the rest. Rows are
            // independent there and every kernel's result for a row is the same in any
            // batch, so the kept rows' logits are unchanged; a pass that asks for none
            // (a long prompt's earlier chunks) ends here.
            if l == last && L < B {
                if L == 0 { return 0 }
                for r in 0..<L where batch.logitEntry[r] != r {
                    let e = batch.logitEntry[r]  // > r: entries are in batch order
                    (q + r * QD).update(from: q + e * QD, count: QD)
                    (x + r * E).update(from: x + e * E, count: E)
                }
                R = L
                pruned = true
            }

            // att[b][h] = softmax(q_h · K_{0...pos}ᵀ / √D) · V_{0...pos}       att: [R][QD]
            // and its int8 copy into act, head by head (the q/k/v region no longer reads act).
            let scale = 1 / Float(D).squareRoot()
            act.reset(tokens: R, cols: QD)
            // Chunks of (token, head) items; `t` is the thread that claimed one, for its scratch.
            pool.parallelFor(R * H, taper: Self.tapers(R)) { t, work in
                let qr = self.qh + t * D
                for item in work {
                    let b = item / H, h = item % H
                    let entry = pruned ? batch.logitEntry[b] : b
                    let pos = batch.positions[entry]
                    let kvOff = (h / G) * D
                    let qv = self.q + b * QD + h * D
                    // The f16 rounding of Q matches llama.cpp, which converts Q to the
                    // cache type before the QK product.
                    qr.update(from: qv, count: D)
                    Kernels.roundToF16(qr, count: D)
                    Kernels.attentionF16(qr, keys: batch.keyRow(entry, layer: l, position: 0, kvDim: KV) + kvOff,
                                         values: batch.valueRow(entry, layer: l, position: 0, kvDim: KV) + kvOff,
                                         stride: KV, count: pos + 1, dim: D, scale: scale, out: self.att + b * QD + h * D)
                    if fuseAttnQuant {
                        self.act.quantize(token: b, columns: h * D..<(h + 1) * D, from: self.att + b * QD)
                    }
                }
            }
            if !fuseAttnQuant { quantize(att, rows: R, cols: QD) }

            // x += att·Woᵀ (each chunk adds the rows it computed)            x: [R][E]
            project(Projection(layer.wo, xb, E), input: att, rows: R, addInto: x)

            // ── Feed-forward block (SwiGLU) ─────────────────────────────────────────
            // xb = rmsnorm(x) · ffn_norm, quantized into act
            normQuantize(rows: R, layer.ffnNorm)
            // gate = silu(xb·Wgateᵀ) ⊙ xb·Wupᵀ, quantized into act2, in one region: each
            // thread owns the same whole-block column range of gate and up.  gate, up: [R][F]
            gateUp(layer, rows: R)
            // x += gate·Wdownᵀ                                               x: [R][E]
            project(Projection(layer.wDown, xb, E), input: gate, rows: R, act: act2, addInto: x)
        }

        // ── Output: logits for the entries that asked ────────────────────────────────
        // xb[j] = rmsnorm(x[entry_j]) · output_norm (x[j] once pruned)        xb: [L][E]
        guard L > 0 else { return 0 }
        act.reset(tokens: L, cols: E)
        parallelRows(L) { j in
            let row = pruned ? j : batch.logitEntry[j]
            self.rmsNorm(self.x + row * E, count: E, self.weights.outputNorm, into: self.xb + j * E)
            self.act.quantize(token: j, from: self.xb + j * E)
        }
        // logits = xb·Woutᵀ                                                  logits: [L][V]
        project(Projection(weights.output, logitsBuffer, V), input: xb, rows: L)
        return L
    }

    // MARK: Steps

    /// out = (x / rms(x)) ⊙ w over `count` values, the sum of squares in double as ggml
    /// does. `out` may be `x` (each value is read before it is written).
    private func rmsNorm(_ x: UnsafePointer<Float>, count n: Int, _ w: UnsafePointer<Float>,
                         into out: UnsafeMutablePointer<Float>) {
        var ss: Double = 0
        for i in 0..<n { ss += Double(x[i] * x[i]) }
        scaleRow(x, sumOfSquares: ss, count: n, w, into: out)
    }

    /// The second half of `rmsNorm` given the row's sum of squares (`rmsNorm4` shares it).
    @inline(__always)
    private func scaleRow(_ x: UnsafePointer<Float>, sumOfSquares ss: Double, count n: Int, _ w: UnsafePointer<Float>,
                          into out: UnsafeMutablePointer<Float>) {
        let mean = Float(ss / Double(n))
        let scale = 1 / (mean + config.rmsEpsilon).squareRoot()
        for i in 0..<n { out[i] = (x[i] * scale) * w[i] }
    }

    /// Rotates each head's first ropeDims dimensions in pairs: (x[2i], x[2i+1]) for
    /// `.adjacent` (llama), (x[i], x[i + ropeDims/2]) for `.halves` (qwen2/qwen3, NEOX).
    @inline(__always)
    private func rope(_ vec: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let D = config.headDim, R = config.ropeDimensionCount / 2
        let cosT = ropeCos + position * R, sinT = ropeSin + position * R
        let (stride, offset) = config.architecture.ropeStyle == .adjacent ? (2, 1) : (1, R)
        for h in 0..<heads {
            let p = vec + h * D
            for i in 0..<R {
                let i0 = stride * i, i1 = i0 + offset
                let x0 = p[i0], x1 = p[i1]
                p[i0] = x0 * cosT[i] - x1 * sinT[i]
                p[i1] = x0 * sinT[i] + x1 * cosT[i]
            }
        }
    }

    private func quantize(_ input: UnsafePointer<Float>, rows: Int, cols: Int) {
        act.reset(tokens: rows, cols: cols)
        parallelRows(rows) { b in self.act.quantize(token: b, from: input + b * cols) }
    }

    /// Four rows' sums of squares at once, lane r the sum of row r in the same order and
    /// precision as `rmsNorm`'s (so bit-identical to it): one row's sum is a chain of
    /// dependent double adds, E of them, and four chains side by side cost about what one
    /// does.
    private func rmsNorm4(_ x: UnsafePointer<Float>, rowStride: Int, count n: Int, _ w: UnsafePointer<Float>,
                          into out: UnsafeMutablePointer<Float>) {
        let x0 = x, x1 = x + rowStride, x2 = x + 2 * rowStride, x3 = x + 3 * rowStride
        var ss = SIMD4<Double>()
        for i in 0..<n {
            let a0: Float = x0[i] * x0[i], a1: Float = x1[i] * x1[i]
            let a2: Float = x2[i] * x2[i], a3: Float = x3[i] * x3[i]
            ss += SIMD4<Double>(Double(a0), Double(a1), Double(a2), Double(a3))
        }
        for r in 0..<4 { scaleRow(x + r * rowStride, sumOfSquares: ss[r], count: n, w, into: out + r * rowStride) }
    }

    /// xb[b] = rmsnorm(x[b]) · w and its int8 copy in `act`, four rows at a time
    /// (`rmsNorm4`), chunks of whole fours when there are enough rows to share.
    private func normQuantize(rows B: Int, _ w: UnsafePointer<Float>) {
        let E = config.embeddingLength
        act.reset(tokens: B, cols: E)
        // Fewer than two fours: one range on this thread (a region cost more than it saved).
        parallelRowRanges(B, granule: 4, minimum: 8) { r in
            var b = r.lowerBound
            while b + 4 <= r.upperBound {
                rmsNorm4(x + b * E, rowStride: E, count: E, w, into: xb + b * E)
                b += 4
            }
            for b in b..<r.upperBound { rmsNorm(x + b * E, count: E, w, into: xb + b * E) }
            for b in r { act.quantize(token: b, from: xb + b * E) }
        }
    }

    /// gate = silu(xb·Wgateᵀ) ⊙ (xb·Wupᵀ) and its int8 copy in `act2`, one parallel region:
    /// each chunk is a range of columns [lo, hi) (whole 32-blocks) of both products, so its
    /// thread can apply SiLU and quantize those blocks without waiting for the others.
    private func gateUp(_ layer: ModelWeights.Layer, rows B: Int) {
        let F = config.feedForwardLength
        let act = self.act, act2 = self.act2
        act2.reset(tokens: B, cols: F)
        let granule = F % QK == 0 ? QK : F
        let chunks = Self.recovers(B) ? MatmulChunks(layer.wGate, layer.wUp, sameRows: true, act: act, input: xb, tokens: B,
                                                     scratch: workerScratch, scratchPerThread: Self.recoverableScratchFloats) : nil
        // A worker's chunk: gate and up in its scratch; SiLU and the int8 copy once it is its own.
        pool.parallelFor(F, granule: granule, taper: Self.tapers(B), recoverable: chunks, commit: { r, s in
            let gateOffset = chunks!.piece(0, of: r).offset, upOffset = chunks!.piece(1, of: r).offset
            for b in 0..<B {
                let g = self.gate + b * F
                (g + r.lowerBound).update(from: s + gateOffset + b * r.count, count: r.count)
                Kernels.siluMul(g, s + upOffset + b * r.count - r.lowerBound, r)
                if granule == QK { act2.quantize(token: b, columns: r, from: g) }
            }
        }, direct: { r in
            @inline(__always) func mul(_ w: WeightMatrix, _ y: UnsafeMutablePointer<Float>) {
                if w.type.usesQuantizedActivations {
                    Kernels.matmul(w, act, rows: r, y: y, yStride: F)
                } else {
                    Kernels.matmulFloat(w, self.xb, xStride: w.cols, tokens: B, rows: r, y: y, yStride: F)
                }
            }
            mul(layer.wGate, self.gate)
            mul(layer.wUp, self.up)
            for b in 0..<B {
                let g = self.gate + b * F, u = self.up + b * F
                Kernels.siluMul(g, u, r)
                if granule == QK { act2.quantize(token: b, columns: r, from: g) }
            }
        })
        if granule != QK {
            parallelRows(B) { b in act2.quantize(token: b, from: self.gate + b * F) }
        }
    }

    /// Runs `body(row)` for each row, on all threads when there are enough rows to pay for
    /// the region's synchronisation.
    private func parallelRows(_ rows: Int, _ body: (Int) -> Void) {
        parallelRowRanges(rows) { range in for b in range { body(b) } }
    }

    /// Runs `body` on ranges of whole `granule`s of rows covering `0..<rows`: one range on
    /// the calling thread below `minimum` rows (or with one thread), else a parallel region.
    private func parallelRowRanges(_ rows: Int, granule: Int = 1, minimum: Int = 4, _ body: (Range<Int>) -> Void) {
        if rows < minimum || pool.threadCount == 1 {
            body(0..<rows)
        } else {
            pool.parallelFor(rows, granule: granule) { _, range in body(range) }
        }
    }

    /// One matrix of a projection region: y[b][r] for r < w.rows, row stride `stride`.
    struct Projection {
        let w: WeightMatrix
        let y: UnsafeMutablePointer<Float>
        let stride: Int
        init(_ w: WeightMatrix, _ y: UnsafeMutablePointer<Float>, _ stride: Int) {
            self.w = w; self.y = y; self.stride = stride
        }
    }

    /// Multiplies up to three matrices sharing one input in a single parallel region: the
    /// concatenated rows are split across threads, so q/k/v (or gate/up) cost one barrier.
    /// Quantized weights read `act` (already filled from `input`), float weights `input`.
    /// With `addInto`, each chunk then adds the rows it computed of p0 into `addInto`
    /// (same row stride): the residual add without a serial pass.
    private func project(_ p0: Projection, _ p1: Projection? = nil, _ p2: Projection? = nil,
                         input: UnsafePointer<Float>, rows B: Int, act: Q8Activations? = nil,
                         addInto: UnsafeMutablePointer<Float>? = nil) {
        let n0 = p0.w.rows, n1 = p1?.w.rows ?? 0, n2 = p2?.w.rows ?? 0
        let total = n0 + n1 + n2
        let act = act ?? self.act
        @inline(__always) func run(_ p: Projection, _ lo: Int, _ hi: Int) {
            guard lo < hi else { return }
            if p.w.type.usesQuantizedActivations {
                Kernels.matmul(p.w, act, rows: lo..<hi, y: p.y, yStride: p.stride)
            } else {
                Kernels.matmulFloat(p.w, input, xStride: p.w.cols, tokens: B, rows: lo..<hi, y: p.y, yStride: p.stride)
            }
        }
        let chunks = Self.recovers(B) ? MatmulChunks(p0.w, p1?.w, p2?.w, act: act, input: input, tokens: B,
                                                     scratch: workerScratch, scratchPerThread: Self.recoverableScratchFloats) : nil
        // A worker's chunk, computed into its scratch, goes into place (or, for p0 with
        // `addInto`, is added there: the sums the caller's path makes) once it is its own.
        @inline(__always) func put(_ i: Int, _ p: Projection, _ r: Range<Int>, _ s: UnsafePointer<Float>) {
            let (rows, offset) = chunks!.piece(i, of: r)
            guard !rows.isEmpty else { return }
            for b in 0..<B {
                let src = s + offset + b * rows.count
                if i == 0, let addInto {
                    let a = addInto + b * p.stride + rows.lowerBound
                    for j in 0..<rows.count { a[j] += src[j] }
                } else {
                    (p.y + b * p.stride + rows.lowerBound).update(from: src, count: rows.count)
                }
            }
        }
        // Granule of 16 rows keeps each chunk on whole cache lines of output.
        pool.parallelFor(total, granule: 16, taper: Self.tapers(B), recoverable: chunks, commit: { r, s in
            put(0, p0, r, s)
            if let p1 { put(1, p1, r, s) }
            if let p2 { put(2, p2, r, s) }
        }, direct: { r in
            run(p0, max(r.lowerBound, 0), min(r.upperBound, n0))
            if let addInto {
                let lo = max(r.lowerBound, 0), hi = min(r.upperBound, n0)
                if lo < hi {
                    for b in 0..<B {
                        let a = addInto + b * p0.stride, y = p0.y + b * p0.stride
                        for i in lo..<hi { a[i] += y[i] }
                    }
                }
            }
            if let p1 { run(p1, max(r.lowerBound - n0, 0), min(r.upperBound - n0, n1)) }
            if let p2 { run(p2, max(r.lowerBound - n0 - n1, 0), min(r.upperBound - n0 - n1, n2)) }
        })
    }
}
