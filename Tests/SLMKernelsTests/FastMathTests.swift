import Foundation
import SLMKernels
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
}
