import CSLMKernels

/// Activations quantized per 32-element block to int8, the way llama.cpp feeds its
/// Q4/Q8 matmuls (Q8_0 for Q8_0/Q4_0 weights, Q8_1 with the block sum for Q4_1).
///
/// One layout serves all three: per block a scale `d` (rounded through f16, as stored by
/// ggml), `s = f16(d · Σq)` for Q4_1's min term, and the exact integer sum `isum` (lets a
/// u8×s8 kernel compute signed products with an offset, and Q4_0's −8 with one multiply).
/// Storage is allocated once, at model load, for the largest batch and row length.
public final class Q8Activations: @unchecked Sendable {
    // @unchecked: written by one phase of the forward pass, read by the next; phases are
    // separated by thread-pool barriers.
    public let capacityTokens: Int
    public let capacityCols: Int
    /// Row length of the data currently held (a multiple of 32).
    public private(set) var cols: Int = 0
    public private(set) var tokens: Int = 0
    /// `[tokens][cols]` int8 values.
    public let qs: UnsafeMutablePointer<Int8>
    /// `[tokens][cols/32]` block scales.
    public let d: UnsafeMutablePointer<Float>
    /// `[tokens][cols/32]` f16-rounded `d · isum`.
    public let s: UnsafeMutablePointer<Float>
    /// `[tokens][cols/32]` exact sums of the block's int8 values.
    public let isum: UnsafeMutablePointer<Int32>

    public init(capacityTokens: Int, capacityCols: Int) {
        precondition(capacityCols % QK == 0)
        self.capacityTokens = capacityTokens
        self.capacityCols = capacityCols
        let blocks = capacityTokens * capacityCols / QK
        qs = ThreadPool.allocateChunked(Int8.self, count: capacityTokens * capacityCols, zero: 0)
        d = ThreadPool.allocateChunked(Float.self, count: blocks, zero: 0)
        s = ThreadPool.allocateChunked(Float.self, count: blocks, zero: 0)
        isum = ThreadPool.allocateChunked(Int32.self, count: blocks, zero: 0)
    }

    deinit {
        qs.deallocate(); d.deallocate(); s.deallocate(); isum.deallocate()
    }

    public var bytes: Int { capacityTokens * capacityCols * (1 + 12 / QK) }

    /// Declares the shape of the next batch; call before `quantize(token:from:)`.
    public func reset(tokens: Int, cols: Int) {
        precondition(tokens <= capacityTokens && cols <= capacityCols && cols % QK == 0,
                     "activation batch \(tokens)x\(cols) exceeds capacity \(capacityTokens)x\(capacityCols)")
        self.tokens = tokens
        self.cols = cols
    }

    /// Quantizes one token's row of `cols` floats. Different tokens may be quantized
    /// concurrently from different threads.
    @inlinable
    public func quantize(token t: Int, from x: UnsafePointer<Float>) {
        quantize(token: t, columns: 0..<cols, from: x)
    }

    /// Quantizes columns `columns` (whole blocks) of token `t`'s row from `x` (which points at
    /// the row's first column, not at `columns.lowerBound`). Disjoint blocks may be quantized
    /// concurrently. Runs `slm_quantize_q8` (bit-identical to `quantizeRow`).
    @inlinable
    public func quantize(token t: Int, columns: Range<Int>, from x: UnsafePointer<Float>) {
        precondition(columns.lowerBound % QK == 0 && columns.upperBound % QK == 0 && columns.upperBound <= cols)
        let o = t * cols + columns.lowerBound
        slm_quantize_q8(x + columns.lowerBound, columns.count, qs + o, d + o / QK, s + o / QK, isum + o / QK)
    }

    /// The reference block quantizer. Matches ggml's x86 path: `d = amax/127`, values
    /// scaled by `127/amax` and rounded to nearest-even, `d` and `s` stored through f16.
    @inlinable
    public static func quantizeRow(_ x: UnsafePointer<Float>, cols: Int, qs: UnsafeMutablePointer<Int8>,
                                   d: UnsafeMutablePointer<Float>, s: UnsafeMutablePointer<Float>,
                                   isum: UnsafeMutablePointer<Int32>) {
        for b in 0..<cols / QK {
            let xb = x + b * QK
            var amax: Float = 0
            for j in 0..<QK { amax = max(amax, abs(xb[j])) }
            let dd = amax / 127
            let id: Float = amax != 0 ? 127 / amax : 0
            var sum: Int32 = 0
            for j in 0..<QK {
                let q = Int8((xb[j] * id).rounded(.toNearestOrEven))
                qs[b * QK + j] = q
                sum &+= Int32(q)
            }
            d[b] = Float(Float16(dd))
            s[b] = Float(Float16(dd * Float(sum)))
            isum[b] = sum
        }
    }
}
