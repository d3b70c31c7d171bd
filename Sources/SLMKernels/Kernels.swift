import CSLMKernels

/// The kernels the model calls. Each entry picks the fastest implementation this CPU
/// supports (chosen once, see `path`) and falls back to `ReferenceKernels`.
public enum Kernels {
    /// Which implementation runs, for the startup log and stats.
    public static let path: String = "portable-swift"

    /// y[t·yStride + r] = W[r] · x[t] for r in `rows`, t in 0..<x.tokens (quantized weights).
    @inlinable
    public static func matmul(_ w: WeightMatrix, _ x: Q8Activations, rows: Range<Int>,
                              y: UnsafeMutablePointer<Float>, yStride: Int) {
        ReferenceKernels.matmul(w, x, rows: rows, y: y, yStride: yStride)
    }

    /// Float-weight matmul (F32/F16 weights, F32 activations).
    @inlinable
    public static func matmulFloat(_ w: WeightMatrix, _ x: UnsafePointer<Float>, xStride: Int, tokens: Int,
                                   rows: Range<Int>, y: UnsafeMutablePointer<Float>, yStride: Int) {
        ReferenceKernels.matmulFloat(w, x, xStride: xStride, tokens: tokens, rows: rows, y: y, yStride: yStride)
    }

    @inlinable
    public static func dotF16(_ q: UnsafePointer<Float>, _ k: UnsafePointer<UInt16>, count: Int) -> Float {
        ReferenceKernels.dotF16(q, k, count: count)
    }

    @inlinable
    public static func axpyF16(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        ReferenceKernels.axpyF16(a, v, y, count: count)
    }

    @inlinable
    public static func scaleRoundF16(_ y: UnsafeMutablePointer<Float>, _ a: Float, count: Int) {
        ReferenceKernels.scaleRoundF16(y, a, count: count)
    }

    @inlinable
    public static func madRoundF16(_ a: Float, _ v: UnsafePointer<UInt16>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        ReferenceKernels.madRoundF16(a, v, y, count: count)
    }

    @inlinable
    public static func toF16(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<UInt16>, count: Int) {
        ReferenceKernels.toF16(x, out, count: count)
    }
}
