import XCTest
import CSLMKernels
@testable import SLMKernels
import SLMTestSupport

/// A random f16 scale: mostly normal magnitudes (2^-14 ..< 2^7), sometimes ±0 or subnormal.
func randomScaleBits(_ rng: inout TestRNG) -> UInt16 {
    let sign: UInt16 = Bool.random(using: &rng) ? 0x8000 : 0
    switch Int.random(in: 0..<16, using: &rng) {
    case 0: return sign
    case 1: return sign | UInt16.random(in: 1...1023, using: &rng)
    default: return sign | UInt16.random(in: 1...20, using: &rng) << 10 | UInt16.random(in: 0...1023, using: &rng)
    }
}

/// A row-major quantized matrix of random blocks, owning its bytes.
final class RandomMatrix {
    let bytes: UnsafeMutableRawPointer
    let matrix: WeightMatrix

    init(type: WeightType, rows: Int, cols: Int, rng: inout TestRNG) throws {
        let blocks = rows * cols / type.blockElements
        bytes = .allocate(byteCount: blocks * type.blockBytes, alignment: 64)
        for i in 0..<blocks * type.blockBytes { bytes.storeBytes(of: UInt8.random(in: 0...255, using: &rng), toByteOffset: i, as: UInt8.self) }
        // Where each type keeps its f16 scale (d) and second f16 (m or dmin), if any.
        let dOffset = type == .q6_K ? 208 : 0
        let hasM: Bool = [.q4_1, .q5_1, .q4_K, .q5_K].contains(type)
        for b in 0..<blocks {
            let blk = bytes + b * type.blockBytes
            blk.storeBytes(of: randomScaleBits(&rng), toByteOffset: dOffset, as: UInt16.self)
            if hasM { blk.storeBytes(of: randomScaleBits(&rng), toByteOffset: 2, as: UInt16.self) }
        }
        matrix = try WeightMatrix(base: UnsafeRawPointer(bytes), type: type, rows: rows, cols: cols)
    }

    deinit { bytes.deallocate() }
}

/// Activations for `tokens` random rows of varied magnitude, with an occasional all-zero block.
func randomActivations(tokens: Int, cols: Int, rng: inout TestRNG) -> Q8Activations {
    let x = Q8Activations(capacityTokens: tokens, capacityCols: cols)
    x.reset(tokens: tokens, cols: cols)
    var row = [Float](repeating: 0, count: cols)
    for t in 0..<tokens {
        let scale = Float(sign: .plus, exponent: Int.random(in: -8...7, using: &rng), significand: 1)
        for i in 0..<cols { row[i] = Float.random(in: -1...1, using: &rng) * scale }
        if Int.random(in: 0..<4, using: &rng) == 0 {
            let b = Int.random(in: 0..<cols / QK, using: &rng)
            for j in 0..<QK { row[b * QK + j] = 0 }
        }
        row.withUnsafeBufferPointer { x.quantize(token: t, from: $0.baseAddress!) }
    }
    return x
}

/// The kernel paths this CPU supports, by C id and name.
func supportedPaths() -> [(id: Int32, name: String)] {
    defer { slm_kernels_force(Int32(SLM_PATH_AUTO)) }
    return (Int32(SLM_PATH_PORTABLE)..<Int32(SLM_PATH_COUNT)).compactMap { id in
        slm_kernels_force(id) == 1 ? (id, Kernels.path) : nil
    }
}

/// Checks `Kernels.matmul` on every supported path against `ReferenceKernels.matmul`, bit for
/// bit, for each type, each of its shapes and each token count, over the whole matrix, a
/// range starting mid-matrix and a single row (outputs written into a wider stride between
/// sentinels). Returns how many comparisons ran.
@discardableResult
func assertMatmulBitIdenticalOnEveryPath(types: [WeightType], shapes: (WeightType) -> [(rows: Int, cols: Int)],
                                         tokenCounts: [Int], seed: UInt64,
                                         file: StaticString = #filePath, line: UInt = #line) throws -> Int {
    var rng = TestRNG(seed: seed)
    let paths = supportedPaths()
    defer { slm_kernels_force(Int32(SLM_PATH_AUTO)) }
    var compared = 0
    for type in types {
        for shape in shapes(type) {
            let w = try RandomMatrix(type: type, rows: shape.rows, cols: shape.cols, rng: &rng)
            for tokens in tokenCounts {
                let x = randomActivations(tokens: tokens, cols: shape.cols, rng: &rng)
                let lo = Int.random(in: 0..<shape.rows, using: &rng)
                for rows in [0..<shape.rows, lo..<shape.rows, lo..<lo + 1] {
                    let yStride = shape.rows + 3, sentinel: Float = -12345
                    var expected = [Float](repeating: sentinel, count: yStride * tokens)
                    ReferenceKernels.matmul(w.matrix, x, rows: rows, y: &expected, yStride: yStride)
                    for path in paths {
                        XCTAssertEqual(slm_kernels_force(path.id), 1, file: file, line: line)
                        var got = [Float](repeating: sentinel, count: yStride * tokens)
                        Kernels.matmul(w.matrix, x, rows: rows, y: &got, yStride: yStride)
                        XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern),
                                       "\(path.name) \(type) \(shape.rows)x\(shape.cols) rows \(rows) tokens \(tokens)",
                                       file: file, line: line)
                        compared += 1
                    }
                }
            }
        }
    }
    XCTAssertGreaterThan(compared, 0, file: file, line: line)
    return compared
}
