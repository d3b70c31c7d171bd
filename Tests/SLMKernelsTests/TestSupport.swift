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
