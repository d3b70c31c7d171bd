#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SLMKernels
import SLMLimits

/// How the next token is chosen. Defaults mirror llama.cpp's common defaults.
public struct SamplingParams: Sendable, Equatable, Codable {
    /// 0 (or less) means greedy: the highest logit, ties to the lowest id.
    public var temperature: Float = 0.8
    /// Keep only the k most likely tokens; 0 disables.
    public var topK: Int = 40
    /// Keep the smallest set whose probability reaches p; 1 disables.
    public var topP: Float = 0.95
    /// Drop tokens less likely than minP × the most likely one; 0 disables.
    public var minP: Float = 0.05
    /// Penalise tokens seen in the last `repeatWindow` tokens; 1 disables.
    public var repeatPenalty: Float = 1.0
    public var repeatWindow: Int = 64
    /// Same seed, same prompt, same params → same output.
    public var seed: UInt64 = 0

    public init(temperature: Float = 0.8, topK: Int = 40, topP: Float = 0.95, minP: Float = 0.05,
                repeatPenalty: Float = 1.0, repeatWindow: Int = 64, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatWindow = repeatWindow
        self.seed = seed
    }

    public static let greedy = SamplingParams(temperature: 0, topK: 1, topP: 1, minP: 0)

    /// A description of the first out-of-range field, or nil when all are valid.
    public var invalidField: String? {
        // The protocol's limits (SLMLimits), checked again here: a caller may build these
        // parameters without the protocol decoder (slmd generate, tests, a future API).
        func bad<B>(_ limit: Limit<B>) -> String { "\(limit.member) must be in \(limit.rangeText)" }
        if !temperature.isFinite || !Limits.temperature.contains(Double(temperature)) { return bad(Limits.temperature) }
        if !Limits.topK.contains(Int64(topK)) { return bad(Limits.topK) }
        if !Limits.topP.contains(Double(topP)) { return bad(Limits.topP) }
        if !Limits.minP.contains(Double(minP)) { return bad(Limits.minP) }
        if !Limits.repeatPenalty.contains(Double(repeatPenalty)) { return bad(Limits.repeatPenalty) }
        if !Limits.repeatWindow.contains(Int64(repeatWindow)) { return bad(Limits.repeatWindow) }
        return nil
    }
}

/// xoshiro256** seeded through splitmix64: small, fast and identical on every platform.
public struct SeededRNG: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix(_ x: inout UInt64) -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(&x), splitmix(&x), splitmix(&x), splitmix(&x))
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Float {
        Float(next() >> 40) * (1.0 / Float(1 << 24))
    }
}

/// Picks tokens from logits. Scratch for the candidate list is allocated once per
/// sampler (one per sequence), never per token.
public final class Sampler: @unchecked Sendable {
    // @unchecked: owned by one sequence, used by one thread at a time.
    public let params: SamplingParams
    private var rng: SeededRNG
    private let ids: UnsafeMutablePointer<Int32>
    private let probs: UnsafeMutablePointer<Float>
    private let vocab: Int

    public init(params: SamplingParams, vocabSize: Int) {
        self.params = params
        vocab = vocabSize
        rng = SeededRNG(seed: params.seed)
        ids = .allocate(capacity: vocabSize)
        probs = .allocate(capacity: vocabSize)
    }

    deinit {
        ids.deallocate()
        probs.deallocate()
    }

    /// Index of the largest logit, ties to the lowest id (llama.cpp's greedy sampler).
    public static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        LogitStats.argmax(logits)
    }

    /// Applies the repetition penalty to `logits` in place for tokens in `recent`
    /// (llama.cpp's rule: positive logits divided, negative multiplied).
    public func applyPenalty(_ logits: UnsafeMutableBufferPointer<Float>, recent: ArraySlice<Int32>) {
        guard params.repeatPenalty != 1, params.repeatWindow > 0 else { return }
        let window = recent.suffix(params.repeatWindow)
        // A token repeated in the window is penalised once: mark by sign of a scratch flag.
        for t in window where t >= 0 && Int(t) < vocab { probs[Int(t)] = 0 }
        for t in window where t >= 0 && Int(t) < vocab && probs[Int(t)] == 0 {
            let i = Int(t)
            logits[i] = logits[i] > 0 ? logits[i] / params.repeatPenalty : logits[i] * params.repeatPenalty
            probs[i] = 1
        }
    }

    /// Chooses the next token. `logits` may be modified (penalties). `recent` is the
    /// sequence so far (prompt and generated), used for the repetition penalty.
    public func sample(_ logits: UnsafeMutableBufferPointer<Float>, recent: ArraySlice<Int32> = []) -> Int32 {
        applyPenalty(logits, recent: recent)
        if params.temperature <= 0 || params.topK == 1 {
            return Self.argmax(UnsafeBufferPointer(logits))
        }
        // Candidates sorted by logit (descending, ties to lower id), cut to top-k.
        var n = logits.count
        for i in 0..<n { ids[i] = Int32(i) }
        let k = params.topK > 0 ? min(params.topK, n) : n
        partialSort(logits, count: n, keep: k)
        n = k
        // Softmax over the candidates (before temperature, as llama.cpp filters).
        let maxL = logits[Int(ids[0])]
        var sum: Float = 0
        for i in 0..<n {
            let p = expf(logits[Int(ids[i])] - maxL)
            probs[i] = p
            sum += p
        }
        for i in 0..<n { probs[i] /= sum }
        // top-p: smallest prefix reaching p (at least one token).
        if params.topP < 1 {
            var cum: Float = 0
            var keep = n
            for i in 0..<n {
                cum += probs[i]
                if cum >= params.topP { keep = i + 1; break }
            }
            n = keep
        }
        // min-p: relative to the most likely token.
        if params.minP > 0 {
            let floor = probs[0] * params.minP
            var keep = 1
            while keep < n && probs[keep] >= floor { keep += 1 }
            n = keep
        }
        // Temperature, then draw.
        let invT = 1 / params.temperature
        sum = 0
        for i in 0..<n {
            let p = expf((logits[Int(ids[i])] - maxL) * invT)
            probs[i] = p
            sum += p
        }
        let r = rng.nextUnit() * sum
        var acc: Float = 0
        for i in 0..<n {
            acc += probs[i]
            if r < acc { return ids[i] }
        }
        return ids[n - 1]
    }

    /// Moves the `keep` best ids to the front of `ids`, sorted best first.
    private func partialSort(_ logits: UnsafeMutableBufferPointer<Float>, count n: Int, keep: Int) {
        @inline(__always) func better(_ a: Int32, _ b: Int32) -> Bool {
            let la = logits[Int(a)], lb = logits[Int(b)]
            return la > lb || (la == lb && a < b)
        }
        if keep >= n / 4 {
            var buf = UnsafeMutableBufferPointer(start: ids, count: n)
            buf.sort(by: better)
            return
        }
        // Insertion into a sorted prefix of length `keep`: O(n·log keep) compares for small k.
        var filled = 0
        for i in 0..<n {
            let id = Int32(i)
            if filled == keep && !better(id, ids[keep - 1]) { continue }
            var pos = filled == keep ? keep - 1 : filled
            if filled < keep { filled += 1 }
            while pos > 0 && better(id, ids[pos - 1]) {
                ids[pos] = ids[pos - 1]
                pos -= 1
            }
            ids[pos] = id
        }
    }
}
