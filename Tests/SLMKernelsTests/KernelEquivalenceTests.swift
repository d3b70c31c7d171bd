import CSLMKernels
import XCTest
@testable import SLMKernels
import SLMTestSupport

/// Every C path must reproduce ReferenceKernels bit for bit on quantized weights, whatever
/// the row range and batch size: a sequence's logits may not depend on either.
final class KernelEquivalenceTests: XCTestCase {
    override func tearDown() { slm_kernels_force(Int32(SLM_PATH_AUTO)) }

    func testBlockSizes() {
        XCTAssertEqual(WeightType.q4_0.blockBytes, 2 + 16)
        XCTAssertEqual(WeightType.q4_1.blockBytes, 2 + 2 + 16)
        XCTAssertEqual(WeightType.q8_0.blockBytes, 2 + 32)
    }

    func testAutoPathIsTheBestSupported() {
        let paths = supportedPaths()
        XCTAssertTrue(paths.contains { $0.name == "portable-c" })
        XCTAssertEqual(Kernels.path, paths.last!.name)  // ids are ordered worst to best per architecture
        XCTAssertEqual(slm_kernels_force(99), 0)
        print("kernel paths supported: \(paths.map(\.name)), auto: \(Kernels.path)")
    }

    func testQuantizedMatmulBitIdenticalOnEveryPath() throws {
        let shapes: [(rows: Int, cols: Int)] = [(1, 32), (3, 64), (7, 96), (9, 32), (13, 576), (17, 160), (33, 64), (70, 128)]
        try assertMatmulBitIdenticalOnEveryPath(types: [.q4_1, .q4_0, .q8_0], shapes: { _ in shapes },
                                                tokenCounts: [1, 2, 3, 5, 6, 7, 8, 17], seed: 42)
    }

    /// Batching must not change a token's result: row t of a batch equals that token alone.
    func testBatchInvariance() throws {
        var rng = TestRNG(seed: 7)
        let w = try RandomMatrix(type: .q4_1, rows: 37, cols: 256, rng: &rng)
        let x = randomActivations(tokens: 9, cols: 256, rng: &rng)
        for path in supportedPaths() {
            slm_kernels_force(path.id)
            var batch = [Float](repeating: 0, count: 37 * 9)
            Kernels.matmul(w.matrix, x, rows: 0..<37, y: &batch, yStride: 37)
            for t in 0..<9 {
                let one = Q8Activations(capacityTokens: 1, capacityCols: 256)
                one.reset(tokens: 1, cols: 256)
                one.qs.update(from: x.qs + t * 256, count: 256)
                one.d.update(from: x.d + t * 8, count: 8)
                one.s.update(from: x.s + t * 8, count: 8)
                one.isum.update(from: x.isum + t * 8, count: 8)
                var single = [Float](repeating: 0, count: 37)
                Kernels.matmul(w.matrix, one, rows: 0..<37, y: &single, yStride: 37)
                XCTAssertEqual(single.map(\.bitPattern), Array(batch[t * 37..<(t + 1) * 37]).map(\.bitPattern),
                               "\(path.name) token \(t)")
            }
        }
    }

    func testF16HelpersOnEveryPath() {
        var rng = TestRNG(seed: 99)
        for path in supportedPaths() {
            slm_kernels_force(path.id)
            for _ in 0..<100 {
                let n = Int.random(in: 1...150, using: &rng)
                let q = (0..<n).map { _ in Float(Float16(Float.random(in: -4...4, using: &rng))) }
                let k = (0..<n).map { _ in randomScaleBits(&rng) }
                let ref = ReferenceKernels.dotF16(q, k, count: n)
                let fast = Kernels.dotF16(q, k, count: n)
                let magnitude = zip(q, k).reduce(Float(0)) { $0 + abs($1.0 * Float(Float16(bitPattern: $1.1))) }
                XCTAssertLessThanOrEqual(abs(fast - ref), Kernels.f16DotTolerance * Float(n) * magnitude + .leastNonzeroMagnitude,
                                         "\(path.name) dotF16 n \(n)")

                let a = Float.random(in: -2...2, using: &rng)
                let y0 = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) }
                var yRef = y0, yFast = y0
                ReferenceKernels.axpyF16(a, k, &yRef, count: n)
                Kernels.axpyF16(a, k, &yFast, count: n)
                XCTAssertEqual(yRef.map(\.bitPattern), yFast.map(\.bitPattern), "\(path.name) axpyF16 n \(n)")

                // Values around and beyond the f16 range: subnormals, ties, overflow.
                let xs: [Float] = (0..<n).map { _ in
                    let e = Int.random(in: -27...17, using: &rng)
                    return Float(sign: Bool.random(using: &rng) ? .minus : .plus, exponent: e,
                                 significand: Float.random(in: 1..<2, using: &rng))
                } + [65504, 65519.99, 65520, 0x1p-25, 0x1.8p-24, 0x1.0020p0, 0x1.0030p0, -0.0, .infinity]
                var hRef = [UInt16](repeating: 0, count: xs.count), hFast = hRef
                ReferenceKernels.toF16(xs, &hRef, count: xs.count)
                Kernels.toF16(xs, &hFast, count: xs.count)
                XCTAssertEqual(hRef, hFast, "\(path.name) toF16")
            }
        }
    }

    /// The C activation quantizer (every path) against `Q8Activations.quantizeRow`, bit for bit,
    /// whole rows and column ranges: zero blocks, exact ties after scaling, wide magnitudes.
    func testActivationQuantizerMatchesReferenceOnEveryPath() {
        var rng = TestRNG(seed: 11)
        let cols = 1536, blocks = cols / QK
        for path in supportedPaths() {
            slm_kernels_force(path.id)
            for rep in 0..<40 {
                var x = (0..<cols).map { _ -> Float in
                    switch Int.random(in: 0..<8, using: &rng) {
                    case 0: return 0
                    case 1: return Float(Int.random(in: -127...127, using: &rng)) * 0.5
                    default: return Float.random(in: -1...1, using: &rng) * Float(sign: .plus, exponent: Int.random(in: -10...10, using: &rng), significand: 1)
                    }
                }
                if rep % 4 == 0 { for i in 0..<QK { x[QK * (rep % blocks) + i] = 0 } }
                var qs = [Int8](repeating: 0, count: cols), d = [Float](repeating: 0, count: blocks)
                var s = d, isum = [Int32](repeating: 0, count: blocks)
                Q8Activations.quantizeRow(x, cols: cols, qs: &qs, d: &d, s: &s, isum: &isum)
                let act = Q8Activations(capacityTokens: 2, capacityCols: cols)
                act.reset(tokens: 2, cols: cols)
                x.withUnsafeBufferPointer { xp in
                    act.quantize(token: 1, from: xp.baseAddress!)
                    // Two halves as two column ranges must give the same row.
                    act.quantize(token: 0, columns: 0..<(cols / 2), from: xp.baseAddress!)
                    act.quantize(token: 0, columns: (cols / 2)..<cols, from: xp.baseAddress!)
                }
                for t in 0..<2 {
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: act.qs + t * cols, count: cols)), qs, "\(path.name) qs")
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: act.d + t * blocks, count: blocks)).map(\.bitPattern), d.map(\.bitPattern), "\(path.name) d")
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: act.s + t * blocks, count: blocks)).map(\.bitPattern), s.map(\.bitPattern), "\(path.name) s")
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: act.isum + t * blocks, count: blocks)), isum, "\(path.name) isum")
                }
            }
        }
        slm_kernels_force(0)
    }

    /// The fused attention head against its Swift twin, and in-place f16 rounding.
    func testAttentionHeadAndRoundingOnEveryPath() {
        var rng = TestRNG(seed: 7)
        let d = 64, stride = 192
        for path in supportedPaths() {
            slm_kernels_force(path.id)
            for _ in 0..<30 {
                let rows = Int.random(in: 1...300, using: &rng)
                let keys = (0..<rows * stride).map { _ in Float16(Float.random(in: -2...2, using: &rng)).bitPattern }
                let values = (0..<rows * stride).map { _ in Float16(Float.random(in: -2...2, using: &rng)).bitPattern }
                var q = (0..<d).map { _ in Float.random(in: -3...3, using: &rng) }
                var qRef = q
                Kernels.roundToF16(&q, count: d)
                for i in 0..<d { qRef[i] = Float(Float16(qRef[i])) }
                XCTAssertEqual(q.map(\.bitPattern), qRef.map(\.bitPattern), "\(path.name) roundToF16")
                var ref = [Float](repeating: 0, count: d), fast = ref
                keys.withUnsafeBufferPointer { k in
                    values.withUnsafeBufferPointer { v in
                        ReferenceKernels.attentionF16(q, keys: k.baseAddress! + 64, values: v.baseAddress! + 64, stride: stride,
                                                      count: rows, dim: d, scale: 0.125, out: &ref)
                        Kernels.attentionF16(q, keys: k.baseAddress! + 64, values: v.baseAddress! + 64, stride: stride,
                                             count: rows, dim: d, scale: 0.125, out: &fast)
                    }
                }
                // Scores differ only by the dot's lane order; the accumulator is f16, so the
                // outputs (averages of values in [-2, 2]) agree to a few f16 ulps.
                let worst = zip(ref, fast).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-2, "\(path.name) attention rows \(rows)")
            }
        }
        slm_kernels_force(0)
    }
}

/// The tile16 layout: a permutation the Swift statement (`copyRow`) and the C repacker agree
/// on, and matmuls over it bit-identical to the reference on the row layout, on every path,
/// for any row range (ranges that start or end inside a tile, tails past the last tile).
final class Tile16LayoutTests: XCTestCase {
    override func tearDown() { slm_kernels_force(Int32(SLM_PATH_AUTO)) }

    /// A repacked copy of `w` that owns its bytes.
    final class Repacked {
        let bytes: UnsafeMutableRawPointer
        let matrix: WeightMatrix
        init(_ w: WeightMatrix) {
            bytes = .allocate(byteCount: w.byteCount, alignment: 64)
            matrix = Kernels.repackTile16(w, into: bytes)
        }
        deinit { bytes.deallocate() }
    }

    func testPreferredLayout() {
        for path in supportedPaths() {
            slm_kernels_force(path.id)
            // Every SIMD path has a tile16 kernel that reads it with plain loads; the scalar
            // path reads rows.
            XCTAssertEqual(Kernels.preferredLayout, path.name == "portable-c" ? .rows : .tile16, path.name)
            // Every quantized type has tile kernels on every SIMD path.
            for type in WeightType.allCases where type.usesQuantizedActivations {
                XCTAssertEqual(Kernels.prefersTile16(type), path.name != "portable-c", "\(path.name) \(type)")
            }
            XCTAssertFalse(Kernels.prefersTile16(.f16), path.name)
        }
    }

    /// The token tile each path's tile-driver kernels sweep a weight group with (suggest
    /// caps its speculative rows per pass there): 4 on x86-avx2 and both NEON paths, 8 on
    /// x86-avx512vnni; none on portable-c, and none for kernels that tile on their own (the
    /// K-quants, Q5 in the row layout).
    func testTokenTilePerPathAndLayout() throws {
        var rng = TestRNG(seed: 9)
        let q41 = try RandomMatrix(type: .q4_1, rows: 16, cols: 256, rng: &rng)
        let q50 = try RandomMatrix(type: .q5_0, rows: 16, cols: 256, rng: &rng)
        let q4k = try RandomMatrix(type: .q4_K, rows: 16, cols: 256, rng: &rng)
        let q41t = Repacked(q41.matrix), q50t = Repacked(q50.matrix), q4kt = Repacked(q4k.matrix)
        let expected = ["x86-avx2": 4, "x86-avx512vnni": 8, "arm64-neon": 4, "arm64-neon-dotprod": 4]
        for path in supportedPaths() {
            slm_kernels_force(path.id)
            let tile = expected[path.name]
            if path.name != "portable-c" { XCTAssertNotNil(tile, "a path this test does not know: \(path.name)") }
            XCTAssertEqual(Kernels.tokenTile(for: q41.matrix), tile, path.name)
            XCTAssertEqual(Kernels.tokenTile(for: q41t.matrix), tile, path.name)
            XCTAssertEqual(Kernels.tokenTile(for: q50t.matrix), tile, path.name)
            XCTAssertNil(Kernels.tokenTile(for: q50.matrix), path.name)
            XCTAssertNil(Kernels.tokenTile(for: q4k.matrix), path.name)
            XCTAssertEqual(Kernels.tokenTile(for: q4kt.matrix), Kernels.prefersTile16(.q4_K) ? tile : nil, path.name)
        }
    }

    func testRepackIsThePermutationCopyRowUndoes() throws {
        var rng = TestRNG(seed: 5)
        for type in [WeightType.q4_1, .q4_0, .q8_0, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K] {
            let cols = type.blockElements == QKK ? 512 : 96
            for rows in [1, 15, 16, 17, 40, 64] {
                let w = try RandomMatrix(type: type, rows: rows, cols: cols, rng: &rng)
                let p = Repacked(w.matrix)
                XCTAssertEqual(p.matrix.layout, .tile16)
                var row = [UInt8](repeating: 0, count: w.matrix.rowBytes)
                var differs = false
                for r in 0..<rows {
                    row.withUnsafeMutableBytes { p.matrix.copyRow(r, into: $0.baseAddress!) }
                    let original = Array(UnsafeRawBufferPointer(start: w.matrix.row(r), count: w.matrix.rowBytes))
                    XCTAssertEqual(row, original, "\(type) rows \(rows) row \(r)")
                    differs = differs || memcmp(p.matrix.base + r * w.matrix.rowBytes, w.matrix.row(r), w.matrix.rowBytes) != 0
                }
                // Whole tiles really are permuted; a matrix of less than one tile is left as is.
                XCTAssertEqual(differs, rows >= 16, "\(type) rows \(rows)")
                // Dequantizing a repacked row (the token embedding lookup) gives the same floats.
                var a = [Float](repeating: 0, count: cols), b = a
                for r in [0, rows / 2, rows - 1] {
                    Dequantize.row(w.matrix, r, into: &a)
                    Dequantize.row(p.matrix, r, into: &b)
                    XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(type) dequantize row \(r)")
                }
            }
        }
    }

    /// Repacking a matrix in pieces of whole tiles (as a cache file is written) gives the
    /// whole repack's bytes, the rows past the last tile included.
    func testRepackInPiecesEqualsTheWholeRepack() throws {
        var rng = TestRNG(seed: 12)
        for type in [WeightType.q4_1, .q8_0, .q5_0, .q4_K, .q5_K, .q6_K] {
            for rows in [7, 16, 45, 80] {
                let w = try RandomMatrix(type: type, rows: rows, cols: type.blockElements == QKK ? 512 : 96, rng: &rng)
                let whole = Repacked(w.matrix)
                let pieces = UnsafeMutableRawPointer.allocate(byteCount: w.matrix.byteCount, alignment: 64)
                defer { pieces.deallocate() }
                var r = 0
                while r < rows {
                    let end = rows - r <= 16 + rows % 16 ? rows : r + 16 * Int.random(in: 1...2, using: &rng)
                    Kernels.repackTile16(w.matrix, rows: r..<end, into: pieces + r * w.matrix.rowBytes)
                    r = end
                }
                XCTAssertEqual(memcmp(pieces, whole.bytes, w.matrix.byteCount), 0, "\(type) rows \(rows)")
            }
        }
    }

    func testTile16MatmulBitIdenticalToReferenceOnEveryPath() throws {
        var rng = TestRNG(seed: 77)
        let shapes: [(rows: Int, cols: Int)] = [(5, 64), (16, 32), (17, 96), (33, 576), (48, 64), (70, 160)]
        let kShapes: [(rows: Int, cols: Int)] = [(5, 256), (16, 256), (17, 512), (33, 768), (48, 256), (70, 512)]
        var compared = 0
        for type in [WeightType.q4_1, .q4_0, .q8_0, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K] {
            for shape in type.blockElements == QKK ? kShapes : shapes {
                let w = try RandomMatrix(type: type, rows: shape.rows, cols: shape.cols, rng: &rng)
                let p = Repacked(w.matrix)
                // Token counts that end on every token tile (8, 4, 2, 1 tokens) and past them.
                for tokens in Array(1...9) + [12, 15, 17] {
                    let x = randomActivations(tokens: tokens, cols: shape.cols, rng: &rng)
                    let yStride = shape.rows + 3
                    var expected = [Float](repeating: -12345, count: yStride * tokens)
                    ReferenceKernels.matmul(w.matrix, x, rows: 0..<shape.rows, y: &expected, yStride: yStride)
                    // Row splits as threads would make them: 1, 2 or 3 parts at arbitrary
                    // (not tile-aligned) boundaries, each computed by its own call.
                    let cuts = (0..<Int.random(in: 0...2, using: &rng)).map { _ in Int.random(in: 0...shape.rows, using: &rng) }
                    let bounds = ([0, shape.rows] + cuts).sorted()
                    for path in supportedPaths() {
                        slm_kernels_force(path.id)
                        var got = [Float](repeating: -12345, count: yStride * tokens)
                        for i in 0..<bounds.count - 1 where bounds[i] < bounds[i + 1] {
                            Kernels.matmul(p.matrix, x, rows: bounds[i]..<bounds[i + 1], y: &got, yStride: yStride)
                        }
                        XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern),
                                       "\(path.name) \(type) \(shape.rows)x\(shape.cols) tokens \(tokens) split \(bounds)")
                        // A single row inside a tile, and nothing outside the range written.
                        let r = Int.random(in: 0..<shape.rows, using: &rng)
                        var one = [Float](repeating: -12345, count: yStride * tokens)
                        Kernels.matmul(p.matrix, x, rows: r..<r + 1, y: &one, yStride: yStride)
                        for t in 0..<tokens {
                            for i in 0..<yStride {
                                let want = i == r ? expected[t * yStride + i] : -12345
                                XCTAssertEqual(one[t * yStride + i].bitPattern, want.bitPattern, "\(path.name) \(type) row \(r) at \(i)")
                            }
                        }
                        compared += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(compared, 0)
    }
}
