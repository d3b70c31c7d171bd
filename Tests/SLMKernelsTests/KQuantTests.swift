import CSLMKernels
import SLMTestSupport
import XCTest
@testable import SLMKernels

/// Q5_0, Q5_1, Q4_K, Q5_K and Q6_K: the bit layouts (against an encoder written here from
/// ggml's block structs), the reference dot against the dequantized weights, and every C path
/// bit-identical to the reference.
final class KQuantTests: XCTestCase {
    override func tearDown() { slm_kernels_force(Int32(SLM_PATH_AUTO)) }

    static let types: [WeightType] = [.q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    func testBlockSizes() {
        XCTAssertEqual(WeightType.q5_0.blockBytes, 2 + 4 + 16)
        XCTAssertEqual(WeightType.q5_1.blockBytes, 2 + 2 + 4 + 16)
        XCTAssertEqual(WeightType.q4_K.blockBytes, 2 + 2 + 12 + 128)
        XCTAssertEqual(WeightType.q5_K.blockBytes, 2 + 2 + 12 + 32 + 128)
        XCTAssertEqual(WeightType.q6_K.blockBytes, 128 + 64 + 16 + 2)
        for t in Self.types { XCTAssertEqual(t.blockElements, [.q5_0, .q5_1].contains(t) ? 32 : 256, "\(t)") }
        // ggml's ids, which the model layer maps GGUF tensor types through.
        XCTAssertEqual(Self.types.map(\.rawValue), [6, 7, 12, 13, 14])
        XCTAssertEqual(Self.types.filter(\.hasTile16Layout), Self.types)  // every one repacks
        XCTAssertThrowsError(try WeightMatrix(base: UnsafeRawPointer(bitPattern: 64)!, type: .q4_K, rows: 1, cols: 576),
                             "a K matrix needs whole 256-element super-blocks")
    }

    /// One block written from chosen integer quants and scales by an encoder that follows
    /// ggml's structs, then dequantized: every element lands where ggml puts it.
    func testDequantizeMatchesIndependentEncoding() throws {
        var rng = TestRNG(seed: 11)
        for type in Self.types {
            let n = type.blockElements
            var q = (0..<n).map { _ in Int.random(in: 0..<(type == .q6_K ? 64 : type == .q4_K ? 16 : 32), using: &rng) }
            q[0] = 0; q[n - 1] = type == .q6_K ? 63 : type == .q4_K ? 15 : 31  // the extremes
            let sc = (0..<16).map { _ in Int.random(in: 0..<64, using: &rng) }   // K: 6-bit scales (Q6_K: 16 int8)
            let mn = (0..<8).map { _ in Int.random(in: 0..<64, using: &rng) }
            let d = Float16(Float.random(in: 0.001...0.1, using: &rng)), m = Float16(Float.random(in: -0.5...0.5, using: &rng))
            var blk = [UInt8](repeating: 0, count: type.blockBytes)
            func put16(_ v: Float16, _ o: Int) { blk[o] = UInt8(v.bitPattern & 0xFF); blk[o + 1] = UInt8(v.bitPattern >> 8) }
            var expected = [Float](repeating: 0, count: n)
            switch type {
            case .q5_0, .q5_1:
                let base = type == .q5_0 ? 2 : 4
                put16(d, 0)
                if type == .q5_1 { put16(m, 2) }
                var qh: UInt32 = 0
                for j in 0..<32 {
                    if q[j] & 16 != 0 { qh |= 1 << UInt32(j) }
                    if j < 16 { blk[base + 4 + j] |= UInt8(q[j] & 15) } else { blk[base + 4 + j - 16] |= UInt8(q[j] & 15) << 4 }
                    expected[j] = type == .q5_0 ? Float(q[j] - 16) * Float(d) : Float(q[j]) * Float(d) + Float(m)
                }
                for i in 0..<4 { blk[base + i] = UInt8((qh >> UInt32(8 * i)) & 0xFF) }
            case .q4_K, .q5_K:
                put16(d, 0); put16(Float16(abs(Float(m))), 2)
                for j in 0..<4 {
                    blk[4 + j] = UInt8(sc[j] | (sc[j + 4] >> 4) << 6)
                    blk[8 + j] = UInt8(mn[j] | (mn[j + 4] >> 4) << 6)
                    blk[12 + j] = UInt8((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4)
                }
                let qs = type == .q4_K ? 16 : 48
                for i in 0..<256 {
                    let chunk = i / 64, l = i % 32, high = (i % 64) >= 32
                    blk[qs + 32 * chunk + l] |= UInt8(q[i] & 15) << (high ? 4 : 0)
                    if type == .q5_K, q[i] & 16 != 0 { blk[16 + l] |= 1 << UInt8(2 * chunk + (high ? 1 : 0)) }
                    let s = i / 32
                    expected[i] = (Float(d) * Float(sc[s])) * Float(q[i]) - Float(Float16(abs(Float(m)))) * Float(mn[s])
                }
            default:  // Q6_K
                put16(d, 208)
                let scales = sc.map { $0 - 32 }  // signed
                for (i, s) in scales.enumerated() { blk[192 + i] = UInt8(bitPattern: Int8(s)) }
                for i in 0..<256 {
                    let half = i / 128, e = i % 128, g = e / 32, l = e % 32
                    blk[64 * half + 32 * (g & 1) + l] |= UInt8(q[i] & 15) << (g < 2 ? 0 : 4)
                    blk[128 + 32 * half + l] |= UInt8(q[i] >> 4) << UInt8(2 * g)
                    expected[i] = (Float(d) * Float(scales[i / 16])) * Float(q[i] - 32)
                }
            }
            let got = try blk.withUnsafeBytes { raw in
                let w = try WeightMatrix(base: raw.baseAddress!, type: type, rows: 1, cols: n)
                var out = [Float](repeating: .nan, count: n)
                Dequantize.row(w, 0, into: &out)
                return out
            }
            XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(type)")
        }
    }

    /// The reference dot computes W·x of the dequantized weights and activations, up to
    /// float rounding of the per-block products. (Q5_1's min term, like Q4_1's and llama.cpp's
    /// q8_1, uses the activations' f16-rounded block sum s, so the exact value does too.)
    func testReferenceDotAgreesWithDequantizedWeights() throws {
        var rng = TestRNG(seed: 5)
        for type in Self.types {
            let cols = 512, rows = 6
            let w = try RandomMatrix(type: type, rows: rows, cols: cols, rng: &rng)
            let x = randomActivations(tokens: 3, cols: cols, rng: &rng)
            var y = [Float](repeating: 0, count: rows * 3)
            ReferenceKernels.matmul(w.matrix, x, rows: 0..<rows, y: &y, yStride: rows)
            var row = [Float](repeating: 0, count: cols)
            for r in 0..<rows {
                Dequantize.row(w.matrix, r, into: &row)
                for t in 0..<3 {
                    var exact = 0.0, mag = 0.0
                    for i in 0..<cols {
                        let xv = Double(x.d[t * cols / QK + i / QK]) * Double(x.qs[t * cols + i])
                        var wv = Double(row[i])
                        if type == .q5_1 {
                            let sb = KQuants.SubBlock(type, row: w.matrix.row(r), index: i / QK)
                            wv = Double(sb.quant(i % QK)) * Double(sb.d)
                            if i % QK == 0 { exact += Double(sb.m) * Double(x.s[t * cols / QK + i / QK]) }
                        }
                        exact += wv * xv
                        mag += abs(wv * xv)
                    }
                    guard exact.isFinite, mag.isFinite, mag < 1e30 else { continue }
                    XCTAssertEqual(Double(y[t * rows + r]), exact, accuracy: 1e-5 * mag + 1e-30, "\(type) row \(r) token \(t)")
                }
            }
        }
    }

    func testMatmulBitIdenticalOnEveryPath() throws {
        try assertMatmulBitIdenticalOnEveryPath(types: Self.types, shapes: { type in
            type.blockElements == QKK ? [(1, 256), (7, 512), (9, 256), (13, 768), (17, 1536)]
                                      : [(1, 32), (7, 96), (9, 576), (13, 64), (33, 160)]
        }, tokenCounts: [1, 2, 3, 4, 5, 9], seed: 99)
    }
}
