#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Portable scalar kernels: the definition of the numerics. Fast kernels must return
/// bit-identical results for quantized types (the integer block dot is exact and the
/// float accumulation order below is part of the contract), so batching or a different
/// CPU path never changes a sequence's logits.
///
/// Contract for a quantized row · activation row, blocks b = 0, 1, …:
///   sumi_b = Σ_j w_q[j]·x_q[j]            (exact integer; Q4_0 uses (q − 8))
///   acc    = fma(d_w[b]·d_x[b], Float(sumi_b), acc)
///   accm   = fma(m_w[b], s_x[b], accm)     (Q4_1 only)
///   result = acc + accm
public enum ReferenceKernels {
    @inlinable
    public static func dotQ4_1(_ w: UnsafeRawPointer, _ x: Q8Activations, token t: Int, blocks: Int) -> Float {
        let qs = x.qs + t * blocks * QK
        let xd = x.d + t * blocks
        let xs = x.s + t * blocks
        var acc: Float = 0
        var accm: Float = 0
        for b in 0..<blocks {
            let blk = w + b * 20
            var sumi: Int32 = 0
            for j in 0..<16 {
                let byte = blk.load(fromByteOffset: 4 + j, as: UInt8.self)
                sumi &+= Int32(byte & 0x0F) * Int32(qs[b * QK + j])
                sumi &+= Int32(byte >> 4) * Int32(qs[b * QK + j + 16])
            }
            acc = acc.addingProduct(f16(blk, 0) * xd[b], Float(sumi))
            accm = accm.addingProduct(f16(blk, 2), xs[b])
        }
        return acc + accm
    }

    @inlinable
    public static func dotQ4_0(_ w: UnsafeRawPointer, _ x: Q8Activations, token t: Int, blocks: Int) -> Float {
        let qs = x.qs + t * blocks * QK
        let xd = x.d + t * blocks
        var acc: Float = 0
        for b in 0..<blocks {
            let blk = w + b * 18
            var sumi: Int32 = 0
            for j in 0..<16 {
                let byte = blk.load(fromByteOffset: 2 + j, as: UInt8.self)
                sumi &+= (Int32(byte & 0x0F) - 8) * Int32(qs[b * QK + j])
                sumi &+= (Int32(byte >> 4) - 8) * Int32(qs[b * QK + j + 16])
            }
            acc = acc.addingProduct(f16(blk, 0) * xd[b], Float(sumi))
        }
        return acc
    }

    @inlinable
    public static func dotQ8_0(_ w: UnsafeRawPointer, _ x: Q8Activations, token t: Int, blocks: Int) -> Float {
        let qs = x.qs + t * blocks * QK
        let xd = x.d + t * blocks
        var acc: Float = 0
        for b in 0..<blocks {
            let blk = w + b * 34
            var sumi: Int32 = 0
            for j in 0..<QK {
                sumi &+= Int32(blk.load(fromByteOffset: 2 + j, as: Int8.self)) * Int32(qs[b * QK + j])
            }
            acc = acc.addingProduct(f16(blk, 0) * xd[b], Float(sumi))
        }
        return acc
    }

    /// Q5_0, Q5_1, Q4_K, Q5_K and Q6_K against the 32-element Q8 activations, one sub-block
    /// (32 elements) at a time, k = 0, 1, … over the row (slm_kernels.h states the same):
    ///   sumi = sc_lo·Σ_{j<16} q_j·x_j + sc_hi·Σ_{j≥16} q_j·x_j   (exact; q as `KQuants` gives it,
    ///          sc_lo = sc_hi = the K sub-block scale, Q6_K's two int8 scales, or 1)
    ///   acc  = fma(d·d_x[k], Float(sumi), acc)
    ///   accm = fma(m, s_x[k], accm)                               (Q5_1)
    ///   accm = fma(dmin·d_x[k], Float(mn·isum_x[k]), accm)        (Q4_K, Q5_K)
    ///   result = Q5_1 ? acc + accm : Q4_K/Q5_K ? acc − accm : acc
    /// llama.cpp pairs the K types with 256-element q8_K activations (one float scale per
    /// super-block); the 32-element blocks used here are finer, and the model-level results
    /// agree within the reference tests' tolerances.
    @inlinable
    public static func dotSub(_ type: WeightType, _ w: UnsafeRawPointer, _ x: Q8Activations, token t: Int,
                              blocks: Int) -> Float {
        let qs = x.qs + t * blocks * QK
        let xd = x.d + t * blocks, xs = x.s + t * blocks, xi = x.isum + t * blocks
        var acc: Float = 0
        var accm: Float = 0
        for k in 0..<blocks {
            let s = KQuants.SubBlock(type, row: w, index: k)
            var lo: Int32 = 0, hi: Int32 = 0
            for j in 0..<16 { lo &+= s.quant(j) * Int32(qs[k * QK + j]) }
            for j in 16..<QK { hi &+= s.quant(j) * Int32(qs[k * QK + j]) }
            acc = acc.addingProduct(s.d * xd[k], Float(s.scale(0) &* lo &+ s.scale(16) &* hi))
            switch type {
            case .q5_1: accm = accm.addingProduct(s.m, xs[k])
            case .q4_K, .q5_K: accm = accm.addingProduct(s.m * xd[k], Float(s.min &* xi[k]))
            default: break
            }
        }
        switch type {
        case .q5_1: return acc + accm
        case .q4_K, .q5_K: return acc - accm
        default: return acc  // adding a zero accm would turn -0 into +0
        }
    }

    /// F32/F16 weights against F32 activations: a sequential fma chain.
    @inlinable
    public static func dotFloat(_ w: UnsafeRawPointer, type: WeightType, _ x: UnsafePointer<Float>, cols: Int) -> Float {
        var acc: Float = 0
        switch type {
        case .f32:
            for i in 0..<cols { acc = acc.addingProduct(w.loadUnaligned(fromByteOffset: 4 * i, as: Float.self), x[i]) }
        case .f16:
            for i in 0..<cols { acc = acc.addingProduct(f16(w, 2 * i), x[i]) }
        default:
            preconditionFailure("dotFloat on \(type)")
        }
        return acc
    }

    /// y[t·yStride + r] = W[r] · x[t] for r in `rows`, t in 0..<x.tokens.
    public static func matmul(_ w: WeightMatrix, _ x: Q8Activations, rows: Range<Int>,
                              y: UnsafeMutablePointer<Float>, yStride: Int) {
        precondition(x.cols == w.cols, "activation length \(x.cols) != matrix columns \(w.cols)")
        precondition(w.layout == .rows, "the reference reads the row layout (compare against the unrepacked matrix)")
        let blocks = w.cols / QK
        for r in rows {
            let row = w.row(r)
            for t in 0..<x.tokens {
                let v: Float
                switch w.type {
                case .q4_1: v = dotQ4_1(row, x, token: t, blocks: blocks)
                case .q4_0: v = dotQ4_0(row, x, token: t, blocks: blocks)
                case .q8_0: v = dotQ8_0(row, x, token: t, blocks: blocks)
                case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K: v = dotSub(w.type, row, x, token: t, blocks: blocks)
                case .f32, .f16: preconditionFailure("use matmulFloat for \(w.type)")
                }
                y[t * yStride + r] = v
            }
        }
    }

    /// Float-weight matmul: y[t·yStride + r] = W[r] · x[t·xStride ..< +cols].
    public static func matmulFloat(_ w: WeightMatrix, _ x: UnsafePointer<Float>, xStride: Int, tokens: Int,
                                   rows: Range<Int>, y: UnsafeMutablePointer<Float>, yStride: Int) {
        for r in rows {
            for t in 0..<tokens {
                y[t * yStride + r] = dotFloat(w.row(r), type: w.type, x + t * xStride, cols: w.cols)
            }
        }
    }

    // MARK: Attention helpers over an f16 KV cache

    /// Σ q[i]·k[i] with q already rounded to f16 values (llama.cpp rounds Q to the cache
    /// type before the KQ product) and k stored as f16 bits.
    @inlinable
    public static func dotF16(_ q: UnsafePointer<Float>, _ k: UnsafePointer<UInt16>, count: Int) -> Float {
        var acc: Float = 0
        for i in 0..<count { acc = acc.addingProduct(q[i], Float(Float16(bitPattern: k[i]))) }
        return acc
    }

    /// y[i] += a · v[i] with v stored as f16 bits.
    @inlinable
    public static func axpyF16(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] = y[i].addingProduct(a, Float(Float16(bitPattern: v[i]))) }
    }

    /// y[i] = f16(y[i] · a): rescales an attention accumulator kept at f16 precision.
    @inlinable
    public static func scaleRoundF16(_ y: UnsafeMutablePointer<Float>, _ a: Float, count: Int) {
        for i in 0..<count { y[i] = Float(Float16(y[i] * a)) }
    }

    /// y[i] = f16(fma(v[i], a, y[i])): accumulates a value row into an accumulator kept at
    /// f16 precision, as llama.cpp's flash attention does with an f16 cache.
    @inlinable
    public static func madRoundF16(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] = Float(Float16(y[i].addingProduct(Float(Float16(bitPattern: v[i])), a))) }
    }

    /// One query head against `count` cached positions: online softmax of `scale · q·k_j`,
    /// the value accumulator rounded to f16 after every update (llama.cpp's CPU flash
    /// attention with an f16 cache does exactly this; matching it keeps logits within its
    /// own spread). Row j of keys/values starts at `j · stride`.
    public static func attentionF16(_ q: UnsafePointer<Float>, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>,
                                    stride: Int, count: Int, dim: Int, scale: Float, out: UnsafeMutablePointer<Float>) {
        out.update(repeating: 0, count: dim)
        var m = -Float.infinity
        var sum: Float = 0
        for j in 0..<count {
            let s = dotF16(q, keys + j * stride, count: dim) * scale
            var ms: Float = 1, vs: Float = 1
            if s > m {
                ms = expf(m - s)
                m = s
                scaleRoundF16(out, ms, count: dim)
            } else {
                vs = expf(s - m)
            }
            madRoundF16(vs, values + j * stride, out, count: dim)
            sum = sum * ms + vs
        }
        let inv = 1 / sum
        for i in 0..<dim { out[i] *= inv }
    }

    /// Rounds floats to f16 bit patterns (round to nearest even).
    @inlinable
    public static func toF16(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, count: Int) {
        for i in 0..<count { out[i] = Float16(x[i]).bitPattern }
    }
}
