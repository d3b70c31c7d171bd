import CSLMKernels

/// The kernels the model calls. Quantized matmuls and the f16 attention helpers run in
/// CSLMKernels, which picks the fastest path this CPU supports once (see `path`); every
/// path is bit-identical to `ReferenceKernels` for quantized weights (the f16 dot may
/// differ by float rounding, see `f16DotTolerance`). Float-weight matmuls stay in Swift.
public enum Kernels {
    /// Which implementation runs, for the startup log and stats: "x86-avx512vnni",
    /// "x86-avx2", "arm64-neon-dotprod", "arm64-neon" or "portable-c".
    public static var path: String { String(cString: slm_kernels_path()) }

    /// Makes `choice` the kernel path of the whole process (`.auto`: the best this CPU
    /// supports, the default). Every path computes bit-identical results; only the speed
    /// differs. Call it before loading a model (the path decides the weights' preferred
    /// layout) and while no kernel runs on another thread.
    public static func use(_ choice: KernelChoice) throws(KernelChoiceError) {
        guard slm_kernels_force(choice.pathID) == 1 else { throw KernelChoiceError(choice: choice) }
    }

    /// y[t·yStride + r] = W[r] · x[t] for r in `rows`, t in 0..<x.tokens (quantized weights).
    @inlinable
    public static func matmul(_ w: WeightMatrix, _ x: Q8Activations, rows: Range<Int>,
                              y: UnsafeMutablePointer<Float>, yStride: Int) {
        var acts = slm_q8_acts(qs: x.qs, d: x.d, s: x.s, isum: x.isum, cols: x.cols, tokens: x.tokens)
        matmul(w, &acts, rows: rows, y: y, yStride: yStride)
    }

    /// `matmul` over activations given as the C struct (`MatmulChunks`: no reference to the
    /// `Q8Activations` object).
    @usableFromInline
    static func matmul(_ w: WeightMatrix, _ acts: inout slm_q8_acts, rows: Range<Int>,
                       y: UnsafeMutablePointer<Float>, yStride: Int) {
        precondition(acts.cols == w.cols, "activation length \(acts.cols) != matrix columns \(w.cols)")
        precondition(rows.lowerBound >= 0 && rows.upperBound <= w.rows, "rows \(rows) outside 0..<\(w.rows)")
        if w.layout == .tile16 {
            slm_matmul_tile16(Int32(w.type.rawValue), w.base, w.rowBytes, w.rows, rows.lowerBound, rows.upperBound,
                              &acts, y, yStride)
            return
        }
        switch w.type {
        case .q4_1:
            slm_matmul_q4_1(w.base, w.rowBytes, rows.lowerBound, rows.upperBound, &acts, y, yStride)
        case .q4_0:
            slm_matmul_q4_0(w.base, w.rowBytes, rows.lowerBound, rows.upperBound, &acts, y, yStride)
        case .q8_0:
            slm_matmul_q8_0(w.base, w.rowBytes, rows.lowerBound, rows.upperBound, &acts, y, yStride)
        case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K:
            slm_matmul_kq(Int32(w.type.rawValue), w.base, w.rowBytes, rows.lowerBound, rows.upperBound, &acts, y, yStride)
        case .f32, .f16:
            preconditionFailure("use matmulFloat for \(w.type)")
        }
    }

    /// Tokens one sweep of `w`'s weight groups serves on the active path (4 on x86-avx2 and
    /// both NEON paths, 8 on x86-avx512vnni): a matmul over more tokens sweeps each group
    /// again per further tile, so its cost rises in steps. nil where there is no such step:
    /// portable-c, and the K-quant and row-layout Q5 kernels (which tile 32 tokens alone).
    public static func tokenTile(for w: WeightMatrix) -> Int? {
        let tile = Int(slm_kernels_token_tile())
        guard tile > 0 else { return nil }
        switch (w.layout, w.type) {
        case (.tile16, .q4_K), (.tile16, .q5_K), (.tile16, .q6_K): return prefersTile16(w.type) ? tile : nil  // else the portable loop
        case (.tile16, _), (.rows, .q4_0), (.rows, .q4_1), (.rows, .q8_0): return tile
        default: return nil
        }
    }

    /// The layout the active path reads fastest (`.tile16` on every SIMD path: x86-avx512vnni,
    /// x86-avx2, arm64-neon-dotprod, arm64-neon; `.rows` on portable-c). Every path computes
    /// either layout, bit-identically; only the speed differs.
    public static var preferredLayout: WeightLayout {
        slm_preferred_layout() == Int32(SLM_LAYOUT_TILE16) ? .tile16 : .rows
    }

    /// Whether the active path computes `type` faster from `.tile16` than from `.rows`: the
    /// preferred layout is `.tile16` and the path has a tile kernel for the type (a path
    /// without K-quant ones would compute a tile16 K-quant matrix through the portable loop).
    public static func prefersTile16(_ type: WeightType) -> Bool {
        slm_tile16_preferred(Int32(type.rawValue)) != 0
    }

    /// Writes rows `rows` of `w` (`.rows` layout, quantized) permuted to `.tile16` at `dst`
    /// (`rows.count · w.rowBytes` bytes, not overlapping): the bytes those rows occupy in the
    /// whole matrix's tile16 copy, so pieces make it up. `rows` starts on a tile (a multiple of
    /// 16) and ends on one or at the matrix's end.
    public static func repackTile16(_ w: WeightMatrix, rows: Range<Int>, into dst: UnsafeMutableRawPointer) {
        precondition(w.layout == .rows && w.type.hasTile16Layout, "repack of a \(w.layout) \(w.type) matrix")
        precondition(rows.lowerBound % 16 == 0 && (rows.upperBound % 16 == 0 || rows.upperBound == w.rows)
                         && rows.upperBound <= w.rows, "repack of rows \(rows) of \(w.rows)")
        slm_repack_tile16(Int32(w.type.rawValue), w.base + rows.lowerBound * w.rowBytes, dst, w.rowBytes, rows.count)
    }

    /// Writes `w` (`.rows` layout, quantized) permuted to `.tile16` at `dst` (`w.byteCount`
    /// bytes, not overlapping) and returns the view of it.
    public static func repackTile16(_ w: WeightMatrix, into dst: UnsafeMutableRawPointer) -> WeightMatrix {
        repackTile16(w, rows: 0..<w.rows, into: dst)
        return try! WeightMatrix(base: UnsafeRawPointer(dst), type: w.type, rows: w.rows, cols: w.cols, layout: .tile16)
    }

    /// Float-weight matmul (F32/F16 weights, F32 activations).
    @inlinable
    public static func matmulFloat(_ w: WeightMatrix, _ x: UnsafePointer<Float>, xStride: Int, tokens: Int,
                                   rows: Range<Int>, y: UnsafeMutablePointer<Float>, yStride: Int) {
        ReferenceKernels.matmulFloat(w, x, xStride: xStride, tokens: tokens, rows: rows, y: y, yStride: yStride)
    }

    /// Largest |fast − reference| of `dotF16` relative to Σ|q[i]·k[i]| per element:
    /// |dotF16 − ReferenceKernels.dotF16| ≤ 2 · count · 2⁻²⁴ · Σ|q[i]·k[i]|.
    public static let f16DotTolerance: Float = 0x1p-23

    @inlinable
    public static func dotF16(_ q: UnsafePointer<Float>, _ k: UnsafePointer<UInt16>, count: Int) -> Float {
        slm_dot_f16(q, k, count)
    }

    /// Bit-identical to `ReferenceKernels.axpyF16` (element-wise fma).
    @inlinable
    public static func axpyF16(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        slm_axpy_f16(a, v, y, count)
    }

    /// Rounds each value to the nearest f16 value, in place (exact on every path).
    @inlinable
    public static func roundToF16(_ y: UnsafeMutablePointer<Float>, count: Int) {
        slm_round_f16(y, count)
    }

    /// One attention head over `count` cached positions (see `ReferenceKernels.attentionF16`).
    @inlinable
    public static func attentionF16(_ q: UnsafePointer<Float>, keys: UnsafePointer<UInt16>, values: UnsafePointer<UInt16>,
                                    stride: Int, count: Int, dim: Int, scale: Float, out: UnsafeMutablePointer<Float>) {
        slm_attn_f16(q, keys, values, stride, count, dim, scale, out)
    }

    /// g[i] = silu(g[i]) · u[i] for i in `range` (SwiGLU): bit-identical to
    /// `FastMath.siluMul`, its reference, on every path (the C kernels run its lanes'
    /// operations in its order; 8 AVX2 lanes where Swift's SIMD8 became SSE pairs).
    @inlinable
    public static func siluMul(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, _ range: Range<Int>) {
        slm_silu_mul(g + range.lowerBound, u + range.lowerBound, range.count)
    }

    /// Bit-identical to `ReferenceKernels.toF16` (round to nearest even).
    @inlinable
    public static func toF16(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, count: Int) {
        slm_f32_to_f16(x, out, count)
    }
}

/// A kernel path chosen by hand: config key `kernels`, `--kernels` of the offline tools.
public enum KernelChoice: String, CaseIterable, Sendable {
    /// The best path this CPU supports (the order below).
    case auto
    case avx512vnni
    case avx2
    case neonDotprod = "neon-dotprod"
    case neon
    case portable

    var pathID: Int32 {
        switch self {
        case .auto: Int32(SLM_PATH_AUTO)
        case .avx512vnni: Int32(SLM_PATH_AVX512VNNI)
        case .avx2: Int32(SLM_PATH_AVX2)
        case .neonDotprod: Int32(SLM_PATH_NEON_DOTPROD)
        case .neon: Int32(SLM_PATH_NEON)
        case .portable: Int32(SLM_PATH_PORTABLE)
        }
    }

    /// Whether this CPU (and build) can run the path.
    public var isSupported: Bool { slm_kernels_supported(pathID) != 0 }

    /// The choices this CPU can run, `auto` first, then best to slowest.
    public static var supported: [KernelChoice] { allCases.filter(\.isSupported) }
}

/// A kernel path this CPU cannot run; names the paths it can.
public struct KernelChoiceError: Error, CustomStringConvertible, Sendable {
    public let choice: KernelChoice
    public init(choice: KernelChoice) { self.choice = choice }
    public var description: String {
        "kernels '\(choice.rawValue)' cannot run on this CPU; it supports "
            + KernelChoice.supported.map(\.rawValue).joined(separator: ", ")
    }
}
