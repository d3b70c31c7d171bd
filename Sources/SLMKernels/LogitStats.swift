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
        return (argmax(l, max: m), logSumExp(l, max: m))
    }

    /// Index of the largest logit, ties to the lowest index; 0 when no logit is above -inf
    /// (all -inf or NaN). llama.cpp's greedy rule, and `Sampler.argmax`'s.
    public static func argmax(_ l: UnsafeBufferPointer<Float>) -> Int32 {
        argmax(l, max: maximum(l))
    }

    static func argmax(_ l: UnsafeBufferPointer<Float>, max m: Float) -> Int32 {
        m > -.infinity ? firstIndex(of: m, in: l) : 0
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
        // Two accumulators: independent max chains keep both vector ports busy. Compare
        // and blend, not pointwiseMax: that stayed an out-of-line lane-by-lane call (25.6 µs
        // for a 49,152-logit row, most of it). A NaN never wins, as with pointwiseMax.
        while i < v {
            let x = load(base + i), y = load(base + i + 8)
            a = a.replacing(with: x, where: x .> a)
            b = b.replacing(with: y, where: y .> b)
            i += 16
        }
        var m = a.replacing(with: b, where: b .> a).max()
        while i < n { m = max(m, base[i]); i += 1 }
        return m
    }

    /// First index holding `m`, 8 lanes at a time (a greedy decode step runs this on every
    /// sequence's row: the scalar loop took ~20 µs when the maximum sat late in the row).
    static func firstIndex(of m: Float, in l: UnsafeBufferPointer<Float>) -> Int32 {
        guard let base = l.baseAddress else { return 0 }
        let n = l.count, mv = F8(repeating: m)
        var i = 0
        while i + 8 <= n {
            if any(load(base + i) .== mv) { break }
            i += 8
        }
        while i < n {
            if base[i] == m { return Int32(i) }
            i += 1
        }
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

    /// What `suggest` keeps of one expanded node's logits row (one pass over the row after
    /// the maximum): its log-sum-exp, the `top.count` largest logits (ids and values, best
    /// first, ties to the lower id) and log of the probability mass on the tokens where
    /// `mask` is 1 (−∞ when none has any mass). The sums are blocked exactly as
    /// `logSumExp`, so `lse` equals it bit for bit.
    ///
    /// Fused because a keystroke scores up to ~10 rows of 49,152 logits: a separate pass
    /// for each of the three numbers would read every row three times.
    public static func expansion(_ l: UnsafeBufferPointer<Float>, mask: UnsafePointer<Float>,
                          topIDs: UnsafeMutableBufferPointer<Int32>, topValues: UnsafeMutableBufferPointer<Float>)
        -> (lse: Double, maskedLogMass: Double) {
        let k = min(topIDs.count, topValues.count)
        guard let base = l.baseAddress, l.count > 0, k > 0 else { return (-.infinity, -.infinity) }
        let m = maximum(l)
        guard m.isFinite else { return (Double(m), -.infinity) }
        let n = l.count, v = n / 16 * 16
        let mv = F8(repeating: m)
        var filled = 0
        // The k-th best so far: a block of 8 with no logit above it is skipped with one compare.
        var threshold = -Float.infinity
        @inline(__always) func offer(_ i: Int) {
            let x = base[i]
            guard filled < k || x > threshold else { return }
            // Strictly greater moves a value up: an equal one found later (a higher id) stays after it.
            var pos = min(filled, k - 1)
            while pos > 0 && x > topValues[pos - 1] {
                topValues[pos] = topValues[pos - 1]
                topIDs[pos] = topIDs[pos - 1]
                pos -= 1
            }
            topValues[pos] = x
            topIDs[pos] = Int32(i)
            filled = min(k, filled + 1)
            if filled == k { threshold = topValues[k - 1] }
        }
        let block = 256
        var d0 = SIMD4<Double>(), d1 = SIMD4<Double>(), m0 = SIMD4<Double>(), m1 = SIMD4<Double>()
        var i = 0
        while i < v {
            let end = min(v, i + block)
            var s0 = F8(), s1 = F8(), e0 = F8(), e1 = F8()
            while i < end {
                let a = load(base + i), b = load(base + i + 8)
                let x0 = FastMath.exp(a - mv), x1 = FastMath.exp(b - mv)
                s0 += x0
                s1 += x1
                e0 += x0 * load(mask + i)
                e1 += x1 * load(mask + i + 8)
                if any(a .> F8(repeating: threshold)) { for j in i..<(i + 8) { offer(j) } }
                if any(b .> F8(repeating: threshold)) { for j in (i + 8)..<(i + 16) { offer(j) } }
                i += 16
            }
            let s = s0 + s1, e = e0 + e1
            d0 += SIMD4<Double>(Double(s[0]), Double(s[1]), Double(s[2]), Double(s[3]))
            d1 += SIMD4<Double>(Double(s[4]), Double(s[5]), Double(s[6]), Double(s[7]))
            m0 += SIMD4<Double>(Double(e[0]), Double(e[1]), Double(e[2]), Double(e[3]))
            m1 += SIMD4<Double>(Double(e[4]), Double(e[5]), Double(e[6]), Double(e[7]))
        }
        var s = (d0 + d1).sum(), e = (m0 + m1).sum()
        while i < n {
            let x = Double(expf(base[i] - m))
            s += x
            e += x * Double(mask[i])
            offer(i)
            i += 1
        }
        // Fewer logits than k: the rest of the list is unused (marked by an impossible id).
        for j in filled..<k { topIDs[j] = -1; topValues[j] = -.infinity }
        return (Double(m) + log(s), e > 0 ? Double(m) + log(e) : -.infinity)
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> F8 {
        UnsafeRawPointer(p).loadUnaligned(as: F8.self)
    }
}

#if canImport(Glibc)
import Glibc
#endif
