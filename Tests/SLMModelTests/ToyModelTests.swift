import Foundation
import GGUF
@testable import SLMKernels
import XCTest
@testable import SLMModel
@testable import SLMTokenizer

/// A 2-layer LLaMA with random weights of every supported type, written as a GGUF by the
/// test: checks the forward pass against a naive float implementation written here, and
/// that batching never changes a sequence's logits.
final class ToyModelTests: XCTestCase {
    static let E = 64, H = 4, KVH = 2, F = 96, L = 2

    struct LCG {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 11
        }
        mutating func unit() -> Float { Float(next() % 1_000_000) / 1_000_000 }  // [0, 1)
        mutating func signed() -> Float { unit() * 2 - 1 }
    }

    /// Random blocks of `type` for a rows×cols matrix, with scales that keep activations O(1).
    static func randomMatrix(_ type: GGMLType, rows: Int, cols: Int, rng: inout LCG) -> [UInt8] {
        var out: [UInt8] = []
        func f16(_ x: Float) { withUnsafeBytes(of: Float16(x).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        let scale: Float = 1 / Float(cols).squareRoot()
        for _ in 0..<rows {
            switch type {
            case .f32:
                for _ in 0..<cols { withUnsafeBytes(of: (rng.signed() * scale * 1.7).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            case .f16:
                for _ in 0..<cols { f16(rng.signed() * scale * 1.7) }
            case .q8_0:
                for _ in 0..<cols / 32 {
                    f16(scale * 1.7 / 127 * (0.5 + rng.unit()))
                    for _ in 0..<32 { out.append(UInt8(bitPattern: Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127))) }
                }
            case .q4_0:
                for _ in 0..<cols / 32 {
                    f16(scale * 1.7 / 8 * (0.5 + rng.unit()))
                    for _ in 0..<16 { out.append(UInt8(rng.next() % 256)) }
                }
            case .q4_1:
                for _ in 0..<cols / 32 {
                    let d = scale * 3.4 / 15 * (0.5 + rng.unit())
                    f16(d)
                    f16(-7.5 * d + rng.signed() * d)
                    for _ in 0..<16 { out.append(UInt8(rng.next() % 256)) }
                }
            default: fatalError()
            }
        }
        return out
    }

    /// Writes the toy model; `tied` leaves out output.weight.
    static func writeToyModel(tied: Bool, seed: UInt64? = nil, path: String? = nil) throws -> String {
        var rng = LCG(state: seed ?? (tied ? 1 : 2))
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("llama.embedding_length", .uint32(UInt32(E)))
        w.set("llama.block_count", .uint32(UInt32(L)))
        w.set("llama.attention.head_count", .uint32(UInt32(H)))
        w.set("llama.attention.head_count_kv", .uint32(UInt32(KVH)))
        w.set("llama.feed_forward_length", .uint32(UInt32(F)))
        w.set("llama.context_length", .uint32(256))
        w.set("llama.rope.freq_base", .float32(10000))
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        // Byte-level vocabulary: one token per byte plus two control tokens.
        var tokens = ["<|endoftext|>", "<|im_end|>"]
        tokens += (0..<256).map { ByteLevel.text(forByte: UInt8($0)) }
        var types = [Int32](repeating: 1, count: tokens.count)
        types[0] = 3; types[1] = 3
        w.set("tokenizer.ggml.model", .string("gpt2"))
        w.set("tokenizer.ggml.pre", .string("smollm"))
        w.set("tokenizer.ggml.tokens", .array(.string, tokens.map { .string($0) }))
        w.set("tokenizer.ggml.token_type", .array(.int32, types.map { .int32($0) }))
        w.set("tokenizer.ggml.merges", .array(.string, []))
        w.set("tokenizer.ggml.eos_token_id", .uint32(1))
        let V = tokens.count
        func mat(_ name: String, _ type: GGMLType, rows: Int, cols: Int) {
            w.addTensor(name, dims: [cols, rows], type: type, data: randomMatrix(type, rows: rows, cols: cols, rng: &rng))
        }
        func norm(_ name: String) {
            w.addTensor(name, dims: [E], floats: (0..<E).map { _ in 0.8 + 0.4 * rng.unit() })
        }
        mat("token_embd.weight", .q8_0, rows: V, cols: E)
        let kv = E / H * KVH
        // Every supported type appears in some projection.
        let kinds: [[GGMLType]] = [[.q4_0, .q4_1, .q8_0, .f16, .q4_1, .q4_0, .q8_0],
                                   [.q4_1, .f32, .q4_0, .q8_0, .f16, .q4_1, .q4_1]]
        for l in 0..<L {
            let k = kinds[l]
            norm("blk.\(l).attn_norm.weight")
            mat("blk.\(l).attn_q.weight", k[0], rows: E, cols: E)
            mat("blk.\(l).attn_k.weight", k[1], rows: kv, cols: E)
            mat("blk.\(l).attn_v.weight", k[2], rows: kv, cols: E)
            mat("blk.\(l).attn_output.weight", k[3], rows: E, cols: E)
            norm("blk.\(l).ffn_norm.weight")
            mat("blk.\(l).ffn_gate.weight", k[4], rows: F, cols: E)
            mat("blk.\(l).ffn_up.weight", k[5], rows: F, cols: E)
            mat("blk.\(l).ffn_down.weight", k[6], rows: E, cols: F)
        }
        norm("output_norm.weight")
        if !tied { mat("output.weight", .f16, rows: V, cols: E) }
        let path = path ?? NSTemporaryDirectory() + "slmd-toy-\(UUID().uuidString).gguf"
        try Data(w.serialized()).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The textbook LLaMA forward in plain floats: dequantized weights, no activation
    /// quantization, f32 attention. Returns logits after each token.
    static func naiveForward(_ m: Model, _ tokens: [Int32]) -> [[Float]] {
        let c = m.config, wts = m.weights
        let E = c.embeddingLength, D = c.headDim, KV = c.kvDim
        func deq(_ w: WeightMatrix) -> [[Float]] {
            (0..<w.rows).map { r in
                var row = [Float](repeating: 0, count: w.cols)
                row.withUnsafeMutableBufferPointer { Dequantize.row(w, r, into: $0.baseAddress!) }
                return row
            }
        }
        func matvec(_ w: [[Float]], _ x: [Float]) -> [Float] { w.map { row in zip(row, x).reduce(0) { $0 + $1.0 * $1.1 } } }
        func rms(_ x: [Float], _ g: UnsafePointer<Float>) -> [Float] {
            let ms = x.reduce(0) { $0 + $1 * $1 } / Float(x.count)
            let s = 1 / (ms + c.rmsEpsilon).squareRoot()
            return x.indices.map { x[$0] * s * g[$0] }
        }
        func rope(_ v: inout [Float], heads: Int, pos: Int) {
            for h in 0..<heads {
                for i in 0..<(c.ropeDimensionCount / 2) {
                    let theta = Float(pos) * powf(c.ropeFreqBase, -2 * Float(i) / Float(c.ropeDimensionCount))
                    let a = v[h * D + 2 * i], b = v[h * D + 2 * i + 1]
                    v[h * D + 2 * i] = a * cosf(theta) - b * sinf(theta)
                    v[h * D + 2 * i + 1] = a * sinf(theta) + b * cosf(theta)
                }
            }
        }
        let emb = deq(wts.tokenEmbedding), out = deq(wts.output)
        let layers = wts.layers.map { ($0, deq($0.wq), deq($0.wk), deq($0.wv), deq($0.wo), deq($0.wGate), deq($0.wUp), deq($0.wDown)) }
        var keys = [[[Float]]](repeating: [], count: c.layerCount)
        var values = keys
        var result: [[Float]] = []
        for (pos, t) in tokens.enumerated() {
            var x = emb[Int(t)]
            for (l, (layer, wq, wk, wv, wo, wg, wu, wd)) in layers.enumerated() {
                let xn = rms(x, layer.attnNorm)
                var q = matvec(wq, xn), k = matvec(wk, xn)
                let v = matvec(wv, xn)
                rope(&q, heads: c.headCount, pos: pos)
                rope(&k, heads: c.kvHeadCount, pos: pos)
                keys[l].append(k); values[l].append(v)
                var att = [Float](repeating: 0, count: E)
                for h in 0..<c.headCount {
                    let kvh = h / c.groupSize
                    var s = (0...pos).map { p in (0..<D).reduce(Float(0)) { $0 + q[h * D + $1] * keys[l][p][kvh * D + $1] } / Float(D).squareRoot() }
                    let mx = s.max()!
                    s = s.map { expf($0 - mx) }
                    let sum = s.reduce(0, +)
                    for p in 0...pos { for i in 0..<D { att[h * D + i] += s[p] / sum * values[l][p][kvh * D + i] } }
                }
                _ = KV
                let o = matvec(wo, att)
                x = zip(x, o).map(+)
                let xf = rms(x, layer.ffnNorm)
                let g = matvec(wg, xf), u = matvec(wu, xf)
                let hdn = zip(g, u).map { $0 / (1 + expf(-$0)) * $1 }
                x = zip(x, matvec(wd, hdn)).map(+)
            }
            result.append(matvec(out, rms(x, wts.outputNorm)))
        }
        return result
    }

    func checkAgainstNaive(tied: Bool) throws {
        let path = try Self.writeToyModel(tied: tied)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path)
        XCTAssertEqual(m.weights.outputIsTied, tied)
        let tokens: [Int32] = [5, 77, 200, 3, 3, 150, 42, 9, 255, 100, 17]
        let expected = Self.naiveForward(m, tokens)
        let runner = Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: 2), maxBatch: 16,
                            maxContext: 32, maxLogits: 16)
        let session = Session(runner: runner, capacity: 32)
        var worst: Float = 0, scale: Float = 0
        try session.feed(tokens, logitsFrom: 0) { i, logits in
            for (a, b) in zip(logits, expected[i]) {
                worst = max(worst, abs(a - b))
                scale = max(scale, abs(b))
            }
        }
        print("toy model (tied: \(tied)): max |Δlogit| \(worst) vs naive float, logit scale \(scale)")
        // Int8 activations and an f16 cache cost a few percent of the logit range.
        XCTAssertLessThan(worst, 0.05 * scale, "max |Δ| \(worst) vs logit scale \(scale)")
        XCTAssertGreaterThan(scale, 0.1, "degenerate toy model")
    }

    func testForwardMatchesNaiveFloatImplementation() throws { try checkAgainstNaive(tied: false) }
    func testTiedOutputFallsBackToEmbedding() throws { try checkAgainstNaive(tied: true) }

    /// Prefill as one batch, token by token, in odd-sized batches, and interleaved with
    /// another sequence: the logits are bit-identical every way.
    func testBatchingNeverChangesLogits() throws {
        let path = try Self.writeToyModel(tied: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path)
        let tokens: [Int32] = [10, 20, 30, 40, 50, 60, 70, 80, 90]
        let other: [Int32] = [200, 201, 202, 203, 204]
        func run(threads: Int, maxBatch: Int, model m: Model = m) throws -> [[Float]] {
            let r = Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: threads), maxBatch: maxBatch,
                           maxContext: 32, maxLogits: maxBatch)
            let s = Session(runner: r, capacity: 32)
            var out: [[Float]] = []
            try s.feed(tokens, logitsFrom: 0) { _, l in out.append(Array(l)) }
            return out
        }
        let reference = try run(threads: 1, maxBatch: 16)
        XCTAssertEqual(try run(threads: 1, maxBatch: 1), reference)
        XCTAssertEqual(try run(threads: 2, maxBatch: 4), reference)
        XCTAssertEqual(try run(threads: 3, maxBatch: 16), reference)
        // Repacked weights (tile16 where the kernels prefer it; every path computes it the
        // same), with row splits that cut through tiles at 3 threads.
        let repacked = try Model(path: path, weightsLayout: .repacked)
        XCTAssertEqual(repacked.weights.layout, Kernels.preferredLayout == .tile16 ? .repacked : .mapped)
        XCTAssertEqual(try run(threads: 1, maxBatch: 1, model: repacked), reference)
        XCTAssertEqual(try run(threads: 3, maxBatch: 16, model: repacked), reference)

        // Two sequences sharing each forward pass.
        let r = Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: 2), maxBatch: 16, maxContext: 32, maxLogits: 16)
        let a = KVCache(config: m.config, capacity: 32), b = KVCache(config: m.config, capacity: 32)
        let batch = Batch(capacity: 16)
        var mixed: [[Float]] = []
        for i in 0..<tokens.count {
            batch.clear()
            if i < other.count { batch.add(other[i], position: i, cache: b, logits: true) }
            batch.add(tokens[i], position: i, cache: a, logits: true)
            try r.forward(batch)
            mixed.append(Array(r.logits(row: batch.logitCount - 1)))
        }
        XCTAssertEqual(mixed, reference)
    }

    /// The last layer runs only the rows that asked for logits: the logits of those rows,
    /// and every later step (which reads the k/v the dropped rows cached), are bit-identical
    /// to a pass where every row asked. Covers a prompt whose earlier chunks ask for none
    /// and a batch whose logit rows are not its first rows.
    func testRowsWithoutLogitsChangeNothing() throws {
        let path = try Self.writeToyModel(tied: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path, weightsLayout: .repacked)
        let tokens: [Int32] = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110]
        let other: [Int32] = [200, 201, 202, 203, 204, 205]
        func runner(maxBatch: Int) -> Runner {
            Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: 2), maxBatch: maxBatch,
                   maxContext: 32, maxLogits: maxBatch)
        }
        // Every row asks: the reference logits at every position.
        var reference: [[Float]] = []
        try Session(runner: runner(maxBatch: 16), capacity: 32).feed(tokens, logitsFrom: 0) { _, l in
            reference.append(Array(l))
        }
        // The prompt but its last token without logits, in one pass and in chunks of 4 (the
        // first two chunks ask for none), then the last token.
        for maxBatch in [16, 4] {
            let s = Session(runner: runner(maxBatch: maxBatch), capacity: 32)
            var got: [[Float]] = []
            try s.feed(Array(tokens.dropLast()), logitsFrom: tokens.count - 1) { _, l in got.append(Array(l)) }
            XCTAssertEqual(got, [], "no row asked")
            try s.feed([tokens.last!], logitsFrom: 0) { _, l in got.append(Array(l)) }
            XCTAssertEqual(got, [reference.last!], "maxBatch \(maxBatch)")
        }
        // One pass of two sequences, logits only for a few rows, none of them first.
        let r = runner(maxBatch: 16)
        let a = KVCache(config: m.config, capacity: 32), b = KVCache(config: m.config, capacity: 32)
        let batch = Batch(capacity: 16)
        for i in 0..<other.count { batch.add(other[i], position: i, cache: b, logits: false) }
        for i in 0..<6 { batch.add(tokens[i], position: i, cache: a, logits: i == 3 || i == 5) }
        try r.forward(batch)
        XCTAssertEqual(batch.logitCount, 2)
        XCTAssertEqual(Array(r.logits(row: 0)), reference[3])
        XCTAssertEqual(Array(r.logits(row: 1)), reference[5])
        // The rest of `tokens` one by one on that cache: the k/v of rows that had no logits
        // are in it.
        for i in 6..<tokens.count {
            batch.clear()
            batch.add(tokens[i], position: i, cache: a, logits: true)
            try r.forward(batch)
            XCTAssertEqual(Array(r.logits(row: 0)), reference[i], "position \(i)")
        }
    }

    /// Workers late to a region or slow inside a chunk (a core shared with another
    /// process) change which thread computes a row, never how: prefill and token-by-token
    /// decode give bit-identical logits at any thread count and any timing.
    func testSlowWorkersNeverChangeLogits() throws {
        let path = try Self.writeToyModel(tied: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path)
        let prompt: [Int32] = [10, 20, 30, 40, 50, 60, 70], decode: [Int32] = [80, 90, 100, 110, 120]
        func run(_ pool: ThreadPool) throws -> [[UInt32]] { try Self.logits(m, pool, prompt: prompt, decode: decode) }
        let reference = try run(ThreadPool(threads: 1))
        XCTAssertEqual(reference.count, prompt.count + decode.count)
        let slow = ThreadPool.Hooks(
            beforeJoin: { t in if t == 1 { usleep(UInt32.random(in: 0...200)) } },
            beforeChunk: { t, c in if (t + c) % 2 == 0 { usleep(UInt32.random(in: 0...100)) } })
        for threads in [2, 3, 4] {
            XCTAssertEqual(try run(ThreadPool(threads: threads)), reference, "\(threads) threads")
            XCTAssertEqual(try run(ThreadPool(threads: threads, hooks: slow)), reference, "\(threads) slow threads")
        }
    }

    /// Every logit's bits of a prompt's rows, then of each decoded token, on `pool`.
    private static func logits(_ m: Model, _ pool: ThreadPool, prompt: [Int32], decode: [Int32],
                               adaptsThreads: Bool = true) throws -> [[UInt32]] {
        let r = Runner(config: m.config, weights: m.weights, pool: pool, maxBatch: 16, maxContext: 32, maxLogits: 16)
        r.adaptsThreads = adaptsThreads
        let s = Session(runner: r, capacity: 32)
        var out: [[UInt32]] = []
        try s.feed(prompt, logitsFrom: 0) { _, l in out.append(l.map(\.bitPattern)) }
        for t in decode { out.append(try s.feed([t]).map(\.bitPattern)) }
        return out
    }

    /// A worker held in the middle of a chunk long enough for the caller to take the chunk
    /// over (a descheduled worker) changes nothing either: prompts long enough for
    /// recoverable regions, at several thread counts, give the 1-thread logits bit for bit.
    func testTakenOverChunksNeverChangeLogits() throws {
        let path = try Self.writeToyModel(tied: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path)
        let prompt: [Int32] = (0..<12).map { Int32(10 + 7 * $0) }, decode: [Int32] = [80, 90, 100]
        func run(_ pool: ThreadPool) throws -> [[UInt32]] {
            try Self.logits(m, pool, prompt: prompt, decode: decode, adaptsThreads: false)
        }
        let reference = try run(ThreadPool(threads: 1))
        let held = ThreadPool.Hooks(beforeChunk: { t, c in if (t + c) % 3 == 0 { usleep(2000) } })
        for threads in [2, 3] {
            // A worker may find a toy's small region done before it joins: run until one of
            // its chunks was taken over.
            let pool = ThreadPool(threads: threads, hooks: held)
            var runs = 0
            repeat {
                XCTAssertEqual(try run(pool), reference, "\(threads) threads")
                runs += 1
            } while pool.takeovers == 0 && runs < 500
            XCTAssertGreaterThan(pool.takeovers, 0, "\(threads) threads")
        }
    }

    /// Passes the governor runs on one thread (cores shared with another process) run each
    /// region as one range, as a 1-thread pool does: solo, parallel and any alternation give
    /// bit-identical logits.
    func testSoloPassesNeverChangeLogits() throws {
        let path = try Self.writeToyModel(tied: false)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path)
        let prompt: [Int32] = [10, 20, 30, 40, 50, 60, 70], decode: [Int32] = [80, 90, 100, 110, 120]
        func run(threads: Int, solo: (Int) -> Bool) throws -> [[UInt32]] {
            let pool = ThreadPool(threads: threads)
            let r = Runner(config: m.config, weights: m.weights, pool: pool, maxBatch: 16, maxContext: 32, maxLogits: 16)
            r.adaptsThreads = false
            let s = Session(runner: r, capacity: 32)
            var out: [[UInt32]] = []
            pool.runsSolo = solo(0)
            try s.feed(prompt, logitsFrom: 0) { _, l in out.append(l.map(\.bitPattern)) }
            for (i, t) in decode.enumerated() {
                pool.runsSolo = solo(i + 1)
                out.append(try s.feed([t]).map(\.bitPattern))
            }
            return out
        }
        let reference = try run(threads: 1) { _ in false }
        for threads in [2, 3] {
            XCTAssertEqual(try run(threads: threads) { _ in true }, reference, "\(threads) threads, solo")
            XCTAssertEqual(try run(threads: threads) { $0 % 2 == 0 }, reference, "\(threads) threads, alternating")
        }
    }

    /// The repacked weights' cache file: written on first load, mapped as is on the next,
    /// rebuilt when the model file or the cache's header changes, and an unusable directory
    /// falls back to anonymous memory. The logits never change.
    func testRepackCacheFile() throws {
        guard Kernels.preferredLayout == .tile16 else { throw XCTSkip("kernel path \(Kernels.path) reads the row layout") }
        let path = try Self.writeToyModel(tied: false)
        let dir = NSTemporaryDirectory() + "slmd-repack-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path); try? FileManager.default.removeItem(atPath: dir) }
        func logits(_ m: Model) throws -> [UInt32] {
            let r = Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: 2), maxBatch: 8, maxContext: 16, maxLogits: 1)
            return Array(try Session(runner: r, capacity: 16).feed([1, 50, 60, 70, 80])).map(\.bitPattern)
        }
        let reference = try logits(try Model(path: path))
        let cacheFile = dir + "/" + (path as NSString).lastPathComponent + ".tile16"

        let first = try Model(path: path, weightsLayout: .repacked, repackCacheDirectory: dir)
        XCTAssertEqual(first.weights.repackCachePath, cacheFile)
        XCTAssertFalse(first.weights.repackCacheHit)
        XCTAssertNil(first.weights.repackCacheProblem)
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: cacheFile)[.size] as? Int)
        XCTAssertEqual(size, (2 << 20) + first.weights.repackedBytes)  // header padded to 2 MiB, then the data
        XCTAssertEqual(try logits(first), reference)

        let second = try Model(path: path, weightsLayout: .repacked, repackCacheDirectory: dir)
        XCTAssertTrue(second.weights.repackCacheHit)
        XCTAssertEqual(try logits(second), reference)

        // A damaged header is not trusted: the file is rebuilt.
        let fh = try XCTUnwrap(FileHandle(forWritingAtPath: cacheFile))
        try fh.seek(toOffset: 40)  // inside the source identity
        fh.write(Data([0xff, 0xee]))
        try fh.close()
        let third = try Model(path: path, weightsLayout: .repacked, repackCacheDirectory: dir)
        XCTAssertFalse(third.weights.repackCacheHit)
        XCTAssertEqual(try logits(third), reference)

        // The model rewritten (other weights, new mtime): the cache is rebuilt, not reused.
        try FileManager.default.removeItem(atPath: path)
        let other = try Self.writeToyModel(tied: false, seed: 3, path: path)
        XCTAssertEqual(other, path)
        let otherReference = try logits(try Model(path: path))
        XCTAssertNotEqual(otherReference, reference)
        let fourth = try Model(path: path, weightsLayout: .repacked, repackCacheDirectory: dir)
        XCTAssertFalse(fourth.weights.repackCacheHit)
        XCTAssertEqual(try logits(fourth), otherReference)

        // A directory that cannot hold the file: anonymous memory, and the reason.
        let fifth = try Model(path: path, weightsLayout: .repacked, repackCacheDirectory: dir + "/missing/dir")
        XCTAssertEqual(fifth.weights.layout, .repacked)
        XCTAssertNil(fifth.weights.repackCachePath)
        XCTAssertTrue(fifth.weights.repackCacheProblem?.contains("missing/dir") ?? false, "\(String(describing: fifth.weights.repackCacheProblem))")
        XCTAssertEqual(try logits(fifth), otherReference)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [(path as NSString).lastPathComponent + ".tile16"],
                       "no temporary files left behind")
    }

    func testRejectsBadBatches() throws {
        let path = try Self.writeToyModel(tied: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path)
        let r = Runner(config: m.config, weights: m.weights, pool: ThreadPool(threads: 1), maxBatch: 4, maxContext: 8, maxLogits: 1)
        let s = Session(runner: r, capacity: 8)
        XCTAssertThrowsError(try s.feed([Int32(m.config.vocabSize)]))  // out of vocabulary
        XCTAssertThrowsError(try s.feed([Int32](repeating: 1, count: 9)))  // over the context
        XCTAssertNoThrow(try s.feed([1, 2, 3, 4, 5, 6]))  // split into batches of 4
        let c = KVCache(config: m.config, capacity: 8)
        let batch = Batch(capacity: 4)
        batch.add(1, position: 3, cache: c, logits: true)  // skips positions 0...2
        XCTAssertThrowsError(try r.forward(batch))
    }

    func testCopyPositionsCopiesOnlyThatRange() throws {
        let path = try Self.writeToyModel(tied: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let m = try Model(path: path)
        let L = m.config.layerCount, KV = m.config.kvDim
        let src = KVCache(config: m.config, capacity: 8), dst = KVCache(config: m.config, capacity: 12)
        for i in 0..<(L * 8 * KV) { src.keys[i] = UInt16(i & 0x7fff); src.values[i] = UInt16((3 * i) & 0x7fff) }
        src.count = 6
        for l in 0..<L { dst.keyRow(layer: l, position: 1)[0] = 0xBEEF }  // "already shared" positions
        dst.copy(from: src, positions: 2..<6)
        XCTAssertEqual(dst.count, 6)
        for l in 0..<L {
            XCTAssertEqual(dst.keyRow(layer: l, position: 1)[0], 0xBEEF, "positions before the range are untouched")
            for p in 2..<6 {
                XCTAssertEqual(Array(UnsafeBufferPointer(start: dst.keyRow(layer: l, position: p), count: KV)),
                               Array(UnsafeBufferPointer(start: src.keyRow(layer: l, position: p), count: KV)))
                XCTAssertEqual(Array(UnsafeBufferPointer(start: dst.valueRow(layer: l, position: p), count: KV)),
                               Array(UnsafeBufferPointer(start: src.valueRow(layer: l, position: p), count: KV)))
            }
        }
    }

    func testMissingTensorAndBadShapeAreNamed() throws {
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("llama.embedding_length", .uint32(64))
        w.set("llama.block_count", .uint32(1))
        w.set("llama.attention.head_count", .uint32(4))
        w.set("llama.feed_forward_length", .uint32(64))
        w.set("llama.context_length", .uint32(64))
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        w.addTensor("token_embd.weight", dims: [64, 4], floats: [Float](repeating: 0, count: 256))
        let path = NSTemporaryDirectory() + "slmd-bad-\(UUID().uuidString).gguf"
        try Data(w.serialized()).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try Model(path: path)) { e in
            XCTAssertTrue("\(e)".contains("blk.0.attn_norm.weight"), "\(e)")
        }
        w.set("general.architecture", .string("mamba"))
        try Data(w.serialized()).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Model(path: path)) { e in XCTAssertTrue("\(e)".contains("mamba"), "\(e)") }
    }
}
