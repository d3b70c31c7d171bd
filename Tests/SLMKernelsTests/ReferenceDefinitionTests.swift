import XCTest
@testable import SLMKernels
import SLMTestSupport

/// The reference itself against hand-computed cases and the block definitions.
final class ReferenceDefinitionTests: XCTestCase {
    func testQuantizeRowHandComputed() {
        // amax = 2: d = 2/127 (through f16), q = round(x * 63.5) with ties to even.
        var x = [Float](repeating: 0, count: 32)
        x[0] = 2; x[1] = -2; x[2] = 1; x[3] = -1; x[4] = 0.5; x[5] = 1.0 / 127; x[6] = 3.0 / 127
        var qs = [Int8](repeating: 0, count: 32)
        var d: Float = 0, s: Float = 0, isum: Int32 = 0
        Q8Activations.quantizeRow(x, cols: 32, qs: &qs, d: &d, s: &s, isum: &isum)
        // 1 * 63.5 = 63.5 -> 64 (even); 0.5 * 63.5 = 31.75 -> 32; (1/127) * 63.5 = 0.5 -> 0; (3/127) * 63.5 = 1.5 -> 2
        XCTAssertEqual(Array(qs[0..<7]), [127, -127, 64, -64, 32, 0, 2])
        XCTAssertEqual(Array(qs[7...]), [Int8](repeating: 0, count: 25))
        XCTAssertEqual(isum, 34)
        XCTAssertEqual(d, Float(Float16(Float(2) / 127)))
        XCTAssertEqual(s, Float(Float16(Float(2) / 127 * 34)))

        // An all-zero block quantizes to zeros with zero scale (no division by zero).
        let zeros = [Float](repeating: 0, count: 32)
        Q8Activations.quantizeRow(zeros, cols: 32, qs: &qs, d: &d, s: &s, isum: &isum)
        XCTAssertEqual(qs, [Int8](repeating: 0, count: 32))
        XCTAssertEqual(d, 0); XCTAssertEqual(s, 0); XCTAssertEqual(isum, 0)

        // Two blocks are independent: the second block's scale comes from its own amax.
        var two = [Float](repeating: 0, count: 64)
        two[0] = 127; two[32] = -0.5; two[33] = 0.25
        var qs2 = [Int8](repeating: 0, count: 64)
        var d2: [Float] = [0, 0], s2: [Float] = [0, 0], i2: [Int32] = [0, 0]
        Q8Activations.quantizeRow(two, cols: 64, qs: &qs2, d: &d2, s: &s2, isum: &i2)
        XCTAssertEqual(qs2[0], 127); XCTAssertEqual(d2[0], 1)
        XCTAssertEqual(qs2[32], -127); XCTAssertEqual(qs2[33], 64)  // 0.25 * 254 = 63.5 -> 64
        XCTAssertEqual(i2, [127, -63])
    }

    func testDequantizeMatchesBlockDefinition() throws {
        // Q4_1: element j = lo(qs[j])·d + m, element j+16 = hi(qs[j])·d + m.
        var q41 = [UInt8](repeating: 0, count: 20)
        withUnsafeBytes(of: Float16(0.5).bitPattern) { q41.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: Float16(-1).bitPattern) { q41.replaceSubrange(2..<4, with: $0) }
        for j in 0..<16 { q41[4 + j] = UInt8(j) | UInt8(15 - j) << 4 }
        // Q4_0: (q − 8)·d.
        var q40 = [UInt8](repeating: 0, count: 18)
        withUnsafeBytes(of: Float16(0.25).bitPattern) { q40.replaceSubrange(0..<2, with: $0) }
        for j in 0..<16 { q40[2 + j] = UInt8(j) | UInt8(j) << 4 }
        // Q8_0: q·d.
        var q80 = [UInt8](repeating: 0, count: 34)
        withUnsafeBytes(of: Float16(-2).bitPattern) { q80.replaceSubrange(0..<2, with: $0) }
        for j in 0..<32 { q80[2 + j] = UInt8(bitPattern: Int8(j * 8 - 128)) }

        var out = [Float](repeating: 0, count: 32)
        try q41.withUnsafeBytes { p in
            Dequantize.row(try WeightMatrix(base: p.baseAddress!, type: .q4_1, rows: 1, cols: 32), 0, into: &out)
        }
        XCTAssertEqual(out, (0..<16).map { Float($0) * 0.5 - 1 } + (0..<16).map { Float(15 - $0) * 0.5 - 1 })
        try q40.withUnsafeBytes { p in
            Dequantize.row(try WeightMatrix(base: p.baseAddress!, type: .q4_0, rows: 1, cols: 32), 0, into: &out)
        }
        XCTAssertEqual(out, (0..<16).map { Float($0 - 8) * 0.25 } + (0..<16).map { Float($0 - 8) * 0.25 })
        try q80.withUnsafeBytes { p in
            Dequantize.row(try WeightMatrix(base: p.baseAddress!, type: .q8_0, rows: 1, cols: 32), 0, into: &out)
        }
        XCTAssertEqual(out, (0..<32).map { Float($0 * 8 - 128) * -2 })
    }

    /// The reference dot equals the dequantized dot up to float rounding (a sanity link
    /// between the two definitions, not part of the bit-exact contract).
    func testReferenceDotAgreesWithDequantizedDot() throws {
        var rng = TestRNG(seed: 3)
        for type in [WeightType.q4_1, .q4_0, .q8_0] {
            let w = try RandomMatrix(type: type, rows: 4, cols: 128, rng: &rng)
            let x = randomActivations(tokens: 1, cols: 128, rng: &rng)
            var y = [Float](repeating: 0, count: 4)
            ReferenceKernels.matmul(w.matrix, x, rows: 0..<4, y: &y, yStride: 4)
            var row = [Float](repeating: 0, count: 128)
            for r in 0..<4 {
                Dequantize.row(w.matrix, r, into: &row)
                var exact: Double = 0, magnitude: Double = 0
                for i in 0..<128 {
                    // Q4_1's min term is taken against s = f16(d·Σq), so compare through x ≈ q·d.
                    let xi = Double(x.qs[i]) * Double(x.d[i / 32])
                    exact += Double(row[i]) * xi
                    magnitude += abs(Double(row[i]) * xi)
                }
                XCTAssertEqual(Double(y[r]), exact, accuracy: 1e-2 * magnitude + 1e-30, "\(type) row \(r)")
            }
        }
    }
}
