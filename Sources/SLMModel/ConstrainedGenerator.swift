#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where constrained generation spent its time and tokens.
public struct ConstraintStats: Sendable, Equatable {
    /// Forward passes run after the prompt (one per sampled token, forced tokens ride along).
    public var forwardPasses = 0
    /// Tokens appended without being sampled (forced stretches).
    public var forcedTokens = 0
    /// Sampled tokens the verifier refused, so the mask was applied and the token resampled.
    public var rejections = 0
    /// Seconds in `allows`, `applyMask` and `forcedTokens` (the constraint's own cost).
    public var constraintSeconds: Double = 0
    /// Seconds in `applyMask` alone.
    public var maskSeconds: Double = 0
    public var decoder = ConstrainedDecoder.Stats()
    /// Every sampled (not forced) token: where its bytes start in the output and its
    /// log-probability under the constrained distribution (the model's softmax renormalised
    /// over the tokens the schema allowed there). Forced tokens have probability 1.
    public var sampled: [SampledToken] = []
}

/// A token the sampler chose under the constraint, for confidence figures.
public struct SampledToken: Sendable, Equatable {
    /// Byte offset of the token's first byte in the generated text.
    public var offset: Int
    /// ln p(token | context, constraint); 0 for a certain choice.
    public var logprob: Float
    public init(offset: Int, logprob: Float) { self.offset = offset; self.logprob = logprob }
}

/// `Generator.run` with a `ConstrainedDecoder`: the loop a CLI or test uses (the daemon's
/// scheduler performs the same steps per sequence).
public enum ConstrainedGenerator {
    /// Generates after `promptIDs` until the document is complete (`finishReason == .stop`)
    /// or `options.maxTokens` output tokens (`.length`, the output then is an unfinished
    /// prefix of a valid document). Stop strings do not apply: the schema decides the end.
    /// With `scoreTokens`, `stats.sampled` records each sampled token's constrained
    /// log-probability (for `FieldConfidence`).
    public static func run(model: Model, session: Session, promptIDs: [Int32], decoder: ConstrainedDecoder,
                           options: GenerationOptions, scoreTokens: Bool = true,
                           now: () -> Double) throws(ModelError) -> (GenerationOutput, ConstraintStats) {
        var out = GenerationOutput(promptIDs: promptIDs)
        var stats = ConstraintStats()
        guard !promptIDs.isEmpty else { throw ModelError("empty prompt") }
        let sampler = Sampler(params: options.sampling, vocabSize: model.config.vocabSize)
        var history = promptIDs
        history.reserveCapacity(promptIDs.count + options.maxTokens)

        func forced() -> [Int32] {
            let t = now()
            let ids = Array(decoder.forcedTokens().prefix(max(0, options.maxTokens - out.generatedIDs.count)))
            for id in ids { decoder.advance(id) }
            stats.forcedTokens += ids.count
            stats.constraintSeconds += now() - t
            return ids
        }

        let t0 = now()
        let first = forced()
        out.generatedIDs += first
        var pending = promptIDs + first
        var promptDone = false
        let t1 = now()
        while true {
            if decoder.isComplete { out.finishReason = .stop; break }
            if out.generatedIDs.count >= options.maxTokens || pending.count > session.remaining {
                out.finishReason = .length
                break
            }
            let logits = try session.feed(pending)
            history += pending.dropFirst(promptDone ? 0 : promptIDs.count)
            if !promptDone { promptDone = true; out.promptSeconds = now() - t0 } else { stats.forwardPasses += 1 }
            var id = sampler.sample(logits, recent: history[...])
            let tv = now()
            if !decoder.allows(id) {
                stats.rejections += 1
                let tm = now()
                decoder.applyMask(logits)
                stats.maskSeconds += now() - tm
                id = sampler.sample(logits, recent: [])  // penalties were applied by the first draw
                guard decoder.allows(id) else { throw ModelError("constraint left no token (automaton dead end)") }
            }
            // Confidence is taken under the model's own distribution (temperature 1), so it
            // means the same whatever sampling was asked for.
            // It costs a softmax over the allowed tokens (~0.3 ms inside free strings), so
            // callers that do not report confidences skip it.
            if scoreTokens {
                stats.sampled.append(SampledToken(offset: decoder.generatedBytes.count, logprob: decoder.maskedLogProb(of: id, logits)))
            }
            stats.constraintSeconds += now() - tv
            out.generatedIDs.append(id)
            if model.tokenizer.isEOG(id) { decoder.advance(id); out.finishReason = .stop; break }
            decoder.advance(id)
            let f = forced()
            out.generatedIDs += f
            pending = [id] + f
        }
        out.text = decoder.generatedText
        out.generateSeconds = now() - t1
        stats.decoder = decoder.stats
        return (out, stats)
    }
}

/// One top-level field of a constrained output and how sure the model was of it.
public struct FieldScore: Sendable, Equatable {
    public var key: String
    /// Probability in [0, 1].
    public var confidence: Double
    public init(key: String, confidence: Double) { self.key = key; self.confidence = confidence }
}

/// Per-field confidence of a generated JSON object.
public enum FieldConfidence {
    /// For each top-level key of the compact JSON object `text`, in output order: the
    /// probability of the choices made for that field, i.e. exp(Σ logprob) of the sampled
    /// tokens that start after the previous field's value and no later than the end of this
    /// one (so the token that ends a number, a separator or `}`, counts for the number).
    /// For an enum field this is the probability mass the constrained model gave the value
    /// it chose. Empty when the output is not a (complete) object.
    public static func compute(text: [UInt8], sampled: [SampledToken]) -> [FieldScore] {
        guard let spans = topLevelValues(text) else { return [] }
        var out: [FieldScore] = []
        var lower = -1  // exclusive; the first field also takes a token starting at the `{`
        for span in spans {
            var lp: Double = 0
            for t in sampled where t.offset > lower && t.offset <= span.end { lp += Double(t.logprob) }
            out.append(FieldScore(key: span.key, confidence: exp(lp)))
            lower = span.end
        }
        return out
    }

    /// Keys and value end offsets (exclusive) of a compact JSON object's members.
    static func topLevelValues(_ b: [UInt8]) -> [(key: String, end: Int)]? {
        var i = 0
        guard b.first == UInt8(ascii: "{") else { return nil }
        i = 1
        var out: [(key: String, end: Int)] = []
        func skipString() -> Bool {  // at the opening quote; leaves i after the closing one
            i += 1
            while i < b.count {
                if b[i] == UInt8(ascii: "\\") { i += 2; continue }
                if b[i] == UInt8(ascii: "\"") { i += 1; return true }
                i += 1
            }
            return false
        }
        if i < b.count, b[i] == UInt8(ascii: "}") { return out }
        while i < b.count {
            guard b[i] == UInt8(ascii: "\""), case let start = i + 1, skipString() else { return nil }
            let key = String(decoding: b[start..<(i - 1)], as: UTF8.self)
            guard i < b.count, b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            var depth = 0
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") { guard skipString() else { return nil }; continue }
                if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
                if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") {
                    if depth == 0 { break }
                    depth -= 1
                }
                if c == UInt8(ascii: ","), depth == 0 { break }
                i += 1
            }
            guard i < b.count else { return nil }
            out.append((key, i))
            if b[i] == UInt8(ascii: "}") { return out }
            i += 1
        }
        return nil
    }
}
