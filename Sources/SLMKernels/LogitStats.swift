/// The two numbers greedy scoring needs from a logits row: its argmax and its
/// log-sum-exp, computed with 8-lane vectors.
///
/// A suggest keystroke scores ~15 rows of 49,152 logits; the scalar loop (Double sum of
/// libm `expf`) took ~0.3–1 ms a row, a large share of the keystroke. Here exp is
/// `FastMath.exp`, a Cephes-style polynomial (relative error ~1e-7 per term on the reduced range), summed
/// in float lanes per block and across blocks in Double: the log-sum-exp stays within
/// ~1e-7 of the Double reference (choose's tests hold it to 1e-6 absolute). Public for
/// constrained decoding too, which weighs the schema's share of every sampled row.
public enum LogitStats {
    typealias F8 = SIMD8<Float>

    /// Index of the largest logit (ties to the lowest index, as `Sampler.argmax`) and
    /// log Σ exp(logit).
    public static func argmaxLogSumExp(_ l: UnsafeBufferPointer<Float>) -> (argmax: Int32, lse: Double) {
        let m = maximum(l)
        return (firstIndex(of: m, in: l), logSumExp(l, max: m))
    }

    /// log Σ exp(l[i]).
    public static func logSumExp(_ l: UnsafeBufferPointer<Float>) -> Double {
        logSumExp(l, max: maximum(l))
    }

    public static func maximum(_ l: UnsafeBufferPointer<Float>) -> Float {
        guard let base = l.baseAddress, l.count > 0 else { return -.infinity }
        let n = l.count, v = n / 16 * 16
        var a = F8(repeating: -.infinity), b = a
        var i = 0
        // Two accumulators: independent max chains keep both vector ports busy.
        while i < v {
            a = pointwiseMax(a, load(base + i))
            b = pointwiseMax(b, load(base + i + 8))
            i += 16
        }
        var m = pointwiseMax(a, b).max()
        while i < n { m = max(m, base[i]); i += 1 }
        return m
    }

    static func firstIndex(of m: Float, in l: UnsafeBufferPointer<Float>) -> Int32 {
        for i in 0..<l.count where l[i] == m { return Int32(i) }
        return 0
    }

    public static func logSumExp(_ l: UnsafeBufferPointer<Float>, max m: Float) -> Double {
        guard let base = l.baseAddress, l.count > 0, m.isFinite else { return Double(m) }
        let n = l.count, v = n / 16 * 16
        let mv = F8(repeating: m)
        // Each 256-logit block is summed in float lanes (16 terms a lane, error ~1e-7) and
        // the blocks in double: a 49k-term float sum alone drifts by ~1e-6, which choose's
        // summed option scores would show.
        let block = 256
        var d0 = SIMD4<Double>(), d1 = SIMD4<Double>()
        var i = 0
        while i < v {
            let end = min(v, i + block)
            var s0 = F8(), s1 = F8()
            while i < end {
                s0 += FastMath.exp(load(base + i) - mv)
                s1 += FastMath.exp(load(base + i + 8) - mv)
                i += 16
            }
            let s = s0 + s1
            d0 += SIMD4<Double>(Double(s[0]), Double(s[1]), Double(s[2]), Double(s[3]))
            d1 += SIMD4<Double>(Double(s[4]), Double(s[5]), Double(s[6]), Double(s[7]))
        }
        var s = (d0 + d1).sum()
        while i < n { s += Double(expf(base[i] - m)); i += 1 }
        return Double(m) + log(s)
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> F8 {
        UnsafeRawPointer(p).loadUnaligned(as: F8.self)
    }
}

#if canImport(Glibc)
import Glibc
#endif
