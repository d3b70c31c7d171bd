import CSLMKernels
import Foundation
import SLMKernels
import SLMTestSupport
import XCTest

final class FastMathTests: XCTestCase {
    func testExpMatchesLibmWithinStatedError() {
        var worst: Float = 0
        var x: Float = -87
        while x <= 88 {
            let v = FastMath.exp(FastMath.F8(repeating: x))
            let want = expf(x)
            let rel = abs(v[0] - want) / want
            worst = max(worst, rel)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 4e-7, "max relative error \(worst)")
        // Clamped ends: no inf or NaN, monotone saturation.
        let ends = FastMath.exp(FastMath.F8(-1000, -100, -88, 0, 88, 89, 1000, .infinity))
        for k in 0..<8 { XCTAssertTrue(ends[k].isFinite && ends[k] >= 0, "\(k): \(ends[k])") }
        XCTAssertEqual(ends[3], 1)
    }

    func testSiluMulIsTheSameWhereverARangeStarts() {
        let n = 77
        var g0 = (0..<n).map { Float($0 - 38) * 0.37 }
        let u = (0..<n).map { Float($0 % 7) - 3 }
        var whole = g0
        whole.withUnsafeMutableBufferPointer { g in u.withUnsafeBufferPointer { FastMath.siluMul(g.baseAddress!, $0.baseAddress!, 0..<n) } }
        // Split at odd points: tails and bodies must agree bit for bit (batch invariance).
        for split in [1, 5, 8, 13, 40, 76] {
            var parts = g0
            parts.withUnsafeMutableBufferPointer { g in
                u.withUnsafeBufferPointer { uu in
                    FastMath.siluMul(g.baseAddress!, uu.baseAddress!, 0..<split)
                    FastMath.siluMul(g.baseAddress!, uu.baseAddress!, split..<n)
                }
            }
            XCTAssertEqual(parts, whole, "split at \(split)")
        }
        for i in 0..<n {
            let x = Double(g0[i]), want = x / (1 + Foundation.exp(-x)) * Double(u[i])
            XCTAssertEqual(Double(whole[i]), want, accuracy: 1e-6 * max(1, abs(want)), "\(i)")
        }
        g0.removeAll()
    }

    /// The C SwiGLU of every path this CPU runs against its Swift reference, bit for bit:
    /// values across the clamp's ends, the polynomial's range, denormals, zeros, infinities
    /// and NaN, ranges starting anywhere (vector bodies and scalar tails).
    func testKernelSiluMulMatchesFastMathOnEveryPath() {
        var rng = TestRNG(seed: 0x5111)
        let special: [Float] = [0, -0, 1, -1, 87, -87, 87.000_01, -87.000_01, 88, -88, 88.000_01, -88.000_01, 89, -89,
                                1e30, -1e30, .infinity, -.infinity, .nan, -.nan, .leastNonzeroMagnitude,
                                -.leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude,
                                -.greatestFiniteMagnitude, 0.346_573_6, -0.346_573_6, 1e-8, -1e-8]
        let n = 4096
        var g0 = [Float](repeating: 0, count: n), u = [Float](repeating: 0, count: n)
        for i in 0..<n {
            switch i % 4 {
            case 0: g0[i] = special[(i / 4) % special.count]
            case 1: g0[i] = Float.random(in: -100...100, using: &rng)
            case 2: g0[i] = Float.random(in: -8...8, using: &rng)
            default: g0[i] = Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng))
            }
            u[i] = i % 9 == 0 ? special[(i / 9) % special.count] : Float.random(in: -4...4, using: &rng)
        }
        var want = g0
        want.withUnsafeMutableBufferPointer { g in u.withUnsafeBufferPointer { FastMath.siluMul(g.baseAddress!, $0.baseAddress!, 0..<n) } }
        defer { slm_kernels_force(Int32(SLM_PATH_AUTO)) }
        var paths = 0
        for id in Int32(SLM_PATH_PORTABLE)..<Int32(SLM_PATH_COUNT) where slm_kernels_force(id) == 1 {
            paths += 1
            for range in [0..<n, 3..<n, 0..<7, 5..<13, 1000..<1001, 17..<4090] {
                var got = g0
                got.withUnsafeMutableBufferPointer { g in u.withUnsafeBufferPointer { Kernels.siluMul(g.baseAddress!, $0.baseAddress!, range) } }
                var bad = 0
                for i in 0..<n {
                    let w = range.contains(i) ? want[i] : g0[i]
                    if got[i].bitPattern != w.bitPattern && !(got[i].isNaN && w.isNaN) {
                        bad += 1
                        if bad <= 3 { XCTFail("\(Kernels.path) range \(range) [\(i)] g \(g0[i]) u \(u[i]): \(got[i]) != \(w)") }
                    }
                }
                XCTAssertEqual(bad, 0, "\(Kernels.path) range \(range)")
            }
        }
        XCTAssertGreaterThanOrEqual(paths, 1)
    }
}
