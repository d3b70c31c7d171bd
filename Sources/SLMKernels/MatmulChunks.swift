import CSLMKernels

/// The products of a recoverable parallel region (`ThreadPool.parallelFor(recoverable:)`): up
/// to three matrices times one set of activations, each chunk a range of rows, which a worker
/// computes into its own scratch.
///
/// Plain values and pointers only, copied by the worker when it joins: a worker descheduled
/// in the middle of a chunk may compute on after its region is over, so it must not reach
/// anything that dies with the region (the caller's stack, its closures). What the pointers
/// reach (weights, activations, scratch) lives as long as the runner, which quiesces the
/// pool before freeing it.
///
/// The scratch holds a chunk's rows of each matrix in turn, `[tokens][rows]` for each
/// (`piece`), computed by the same kernels as `Kernels.matmul` / `matmulFloat`: the same
/// values the caller computes in place.
public struct MatmulChunks: @unchecked Sendable {
    // @unchecked: raw pointers to memory the runner owns (see above).
    private let matrices: (WeightMatrix, WeightMatrix?, WeightMatrix?)
    /// Each matrix takes the whole range (gate and up: the same columns of both), instead of
    /// its part of their concatenated rows (q, k, v).
    public let sameRows: Bool
    private let acts: slm_q8_acts
    private let input: UnsafePointer<Float>
    public let tokens: Int
    private let scratchBase: UnsafeMutablePointer<Float>
    /// Floats of scratch each thread has.
    public let scratchPerThread: Int
    // Set by the pool: how it cuts the region (ThreadPool.chunk).
    var count = 0, granule = 1, taper = false, threads = 1

    /// `act` (quantized weights) or `input` (float weights, `tokens` rows of each matrix's
    /// `cols`) multiplied by `m0`, `m1`, `m2`; worker t's scratch (t >= 1: the caller never
    /// needs one) is `scratchPerThread` floats at `scratch + (t - 1) * scratchPerThread`.
    public init(_ m0: WeightMatrix, _ m1: WeightMatrix? = nil, _ m2: WeightMatrix? = nil, sameRows: Bool = false,
                act: Q8Activations, input: UnsafePointer<Float>, tokens: Int,
                scratch: UnsafeMutablePointer<Float>, scratchPerThread: Int) {
        matrices = (m0, m1, m2)
        self.sameRows = sameRows
        acts = slm_q8_acts(qs: act.qs, d: act.d, s: act.s, isum: act.isum, cols: act.cols, tokens: act.tokens)
        self.input = input
        self.tokens = tokens
        scratchBase = scratch
        self.scratchPerThread = scratchPerThread
    }

    @inline(__always)
    private func matrix(_ i: Int) -> WeightMatrix? {
        switch i {
        case 0: return matrices.0
        case 1: return matrices.1
        default: return matrices.2
        }
    }

    /// Matrix `i`'s rows in chunk `range`, and where they start in the scratch.
    public func piece(_ i: Int, of range: Range<Int>) -> (rows: Range<Int>, offset: Int) {
        var start = 0, offset = 0
        for j in 0...i {
            guard let w = matrix(j) else { return (0..<0, offset) }
            let lo = sameRows ? range.lowerBound : max(range.lowerBound - start, 0)
            let hi = sameRows ? range.upperBound : min(range.upperBound - start, w.rows)
            let rows = lo < hi ? lo..<hi : lo..<lo
            if j == i { return (rows, offset) }
            offset += tokens * rows.count
            if !sameRows { start += w.rows }
        }
        return (0..<0, offset)
    }

    /// Floats of scratch a chunk of `rows` rows (of the concatenation, or of each matrix
    /// with `sameRows`) needs.
    public func scratchFloats(rows: Int) -> Int {
        let n = matrices.1 == nil ? 1 : matrices.2 == nil ? 2 : 3
        return tokens * rows * (sameRows ? n : 1)
    }

    /// Thread `t`'s scratch.
    func scratch(thread t: Int) -> UnsafeMutablePointer<Float> { scratchBase + (t - 1) * scratchPerThread }

    /// Computes chunk `range` into `s` (see `piece`).
    func compute(_ range: Range<Int>, into s: UnsafeMutablePointer<Float>) {
        for i in 0..<3 {
            guard let w = matrix(i) else { break }
            let (rows, offset) = piece(i, of: range)
            guard !rows.isEmpty else { continue }
            // The kernels store row r of token t at y[t * yStride + r] (absolute rows): y is
            // placed so that the chunk's first row lands at the piece's start.
            let y = s + offset - rows.lowerBound
            if w.type.usesQuantizedActivations {
                var a = acts
                Kernels.matmul(w, &a, rows: rows, y: y, yStride: rows.count)
            } else {
                Kernels.matmulFloat(w, input, xStride: w.cols, tokens: tokens, rows: rows, y: y, yStride: rows.count)
            }
        }
    }
}
