#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SLMKernels
import SLMConstraint

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
    /// Where the model's own most likely token was one the schema refused, and what it
    /// would have written from there (see `Departure`).
    public var departures: [Departure] = []
}

/// A token the sampler chose under the constraint, for confidence figures.
public struct SampledToken: Sendable, Equatable {
    /// Byte offset of the token's first byte in the generated text.
    public var offset: Int
    /// ln p(token | context, constraint); 0 for a certain choice.
    public var logprob: Float
    /// ln of the probability mass the unconstrained model put on the tokens the schema
    /// allowed at this step (0 when it wanted nothing else).
    public var logMass: Float
    public init(offset: Int, logprob: Float, logMass: Float = 0) { self.offset = offset; self.logprob = logprob; self.logMass = logMass }
}

/// A step where the model's own first choice (the unconstrained argmax) was a token the
/// schema refused: what the model wanted to write there, found by decoding greedily without
/// the constraint from that point until the value it was writing ends, then rewinding.
public struct Departure: Sendable, Equatable {
    /// Byte offset in the generated text where the refused token would have started.
    public var offset: Int
    /// The bytes the model wanted from `offset` on, to the end of the value it was in, or
    /// as far as `ConstrainedGenerator.maxProbeTokens` got (then `complete` is false).
    public var wanted: [UInt8]
    public var complete: Bool
    /// Whether the schema accepts `wanted` from the departure point: the model wanted a
    /// valid value, only spelled with other tokens.
    public var valid: Bool
    public init(offset: Int, wanted: [UInt8], complete: Bool, valid: Bool) {
        self.offset = offset; self.wanted = wanted; self.complete = complete; self.valid = valid
    }
}

/// `Generator.run` with a `ConstrainedDecoder`: the loop a CLI or test uses (the daemon's
/// scheduler performs the same steps per sequence).
public enum ConstrainedGenerator {
    /// Most tokens decoded without the constraint to find what the model wanted at a departure
    /// (`Departure`): enough for a long enum-like word or a 15-digit number.
    public static let maxProbeTokens = 8

    /// Generates after `promptIDs` until the document is complete (`finishReason == .stop`)
    /// or `options.maxTokens` output tokens (`.length`, the output then is an unfinished
    /// prefix of a valid document). Stop strings do not apply: the schema decides the end.
    ///
    /// With `scoreTokens`, `stats.sampled` records each sampled token's constrained
    /// log-probability and the schema's share of the model's own distribution there (for
    /// `FieldConfidence` and `ParseVerdict`). With `departures` too, `stats.departures`
    /// records what the model wanted wherever its own first choice was refused in a field
    /// the filter names, up to the first violation: that costs a few single-token passes per
    /// departure, and one extra logits row (or pass, at the end of the document) per number
    /// the schema closed.
    ///
    /// With `noNumbers` (the input states no number), a value that may be null is never a
    /// number: where the schema would allow either, a number is refused (and when null is
    /// then the only choice, it is written without asking the model). A tiny model
    /// otherwise fills an optional number from its examples ("21").
    ///
    /// `interrupt` is asked before every forward pass; a reason it returns (cancelled,
    /// superseded, deadline) ends generation there with that finish reason.
    public static func run(model: Model, session: Session, promptIDs: [Int32], decoder: ConstrainedDecoder,
                           options: GenerationOptions, scoreTokens: Bool = true, departures: DepartureFilter? = nil,
                           noNumbers: Bool = false, interrupt: () -> FinishReason? = { nil },
                           now: () -> Double) throws(ModelError) -> (GenerationOutput, ConstraintStats) {
        var out = GenerationOutput(promptIDs: promptIDs)
        var stats = ConstraintStats()
        guard !promptIDs.isEmpty else { throw ModelError("empty prompt") }
        let sampler = Sampler(params: options.sampling, vocabSize: model.config.vocabSize)
        let V = decoder.vocabulary
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
        // Set when pending[0] is a sampled digit and the schema forced what follows it (a
        // number at its maximum is closed without asking the model): the state and text
        // after that digit, to check whether the model wanted the number to go on.
        var watch: (state: SchemaAutomaton.State, text: [UInt8])?
        // Cleared at the first violation: the parse cannot match any more, so the passes
        // that would describe further ones are not worth their time.
        var probing = departures != nil
        func record(_ d: Departure?, text: [UInt8]) {
            guard let d else { return }
            stats.departures.append(d)
            if !d.valid, d.complete, let departures, let open = JSONSpans.openValue(text),
               departures.isViolation(field: open.key, value: Array(text[open.valueStart...]) + d.wanted) {
                probing = false
            }
        }
        let t1 = now()
        /// The model's favourite token after the digit `w` watches (`l` are the logits there),
        /// when it is one the schema refused where it forced `forcedNext`.
        func departsAfterDigit(_ l: UnsafeMutableBufferPointer<Float>, forcedNext: Int32,
                               _ w: (state: SchemaAutomaton.State, text: [UInt8])) -> Int32? {
            let fav = Sampler.argmax(UnsafeBufferPointer(l))
            guard fav != forcedNext, V.isEligible(fav), decoder.automaton.step(w.state, V.bytes(of: fav)) == nil else { return nil }
            return fav
        }
        while true {
            if decoder.isComplete {
                // The document ended right after a number the schema closed: one pass over
                // that digit tells whether the model meant the number to go on (180 where
                // the maximum is 100). Generation never feeds its last tokens otherwise.
                if let w = watch, pending.count > 1, session.remaining > 0 {
                    let l = try session.feed([pending[0]])
                    if let favourite = departsAfterDigit(l, forcedNext: pending[1], w) {
                        record(try probe(session: session, decoder: decoder, state: w.state, text: w.text, favourite: favourite), text: w.text)
                    }
                }
                out.finishReason = .stop
                break
            }
            if out.generatedIDs.count >= options.maxTokens || pending.count > session.remaining {
                out.finishReason = .length
                break
            }
            if let reason = interrupt() {
                out.finishReason = reason
                break
            }
            var afterDigit: Int32?
            var logits = try session.feed(pending, alsoAt: watch == nil ? nil : 0, onLogits: watch.map { w in { [pending] i, l in
                guard i == 0, pending.count > 1 else { return }
                afterDigit = departsAfterDigit(l, forcedNext: pending[1], w)
            } })
            history += pending.dropFirst(promptDone ? 0 : promptIDs.count)
            if !promptDone { promptDone = true; out.promptSeconds = now() - t0 } else { stats.forwardPasses += 1 }
            if let w = watch, let favourite = afterDigit {
                // Back to just after the digit, ask what the model wanted, then recompute the
                // forced tokens' KV (the same values, so the same logits follow).
                session.rewind(to: session.position - (pending.count - 1))
                record(try probe(session: session, decoder: decoder, state: w.state, text: w.text, favourite: favourite), text: w.text)
                logits = try session.feed(Array(pending.dropFirst()))
            }
            watch = nil

            if noNumbers, let only = decoder.nullInsteadOfNumber() {
                if only {
                    // Null is all that is left: written as forced text, not a model choice.
                    let chosen = V.tokenizer.encode("null", parseSpecial: false)
                    for id in chosen {
                        guard decoder.allows(id) else { throw ModelError("the tokenizer cannot spell null here") }
                        decoder.advance(id)
                    }
                    stats.forcedTokens += chosen.count
                    let f = forced()
                    out.generatedIDs += chosen + f
                    pending = chosen + f
                    continue
                }
                decoder.applyMask(logits)
                for i in 0..<logits.count where logits[i] > -.infinity {
                    if let b = V.bytes(of: Int32(i)).first, JSONSpans.startsNumber(b) { logits[i] = -.infinity }
                }
            }
            // The unconstrained distribution, before sampling penalties or the mask touch it
            // (after the number ban, which is a rule of the request, not the model's choice).
            var lseAll: Float = 0
            var favourite: Int32 = 0
            if scoreTokens {
                let (arg, lse) = LogitStats.argmaxLogSumExp(UnsafeBufferPointer(logits))
                favourite = arg
                lseAll = Float(lse)
            }
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
                let (lp, lseAllowed) = decoder.maskedScores(of: id, logits)
                stats.sampled.append(SampledToken(offset: decoder.generatedBytes.count, logprob: lp,
                                                  logMass: min(0, lseAllowed - lseAll)))
                if probing, let departures, favourite != id, !decoder.allows(favourite),
                   let open = JSONSpans.openValue(decoder.generatedBytes), departures.worthProbing(field: open.key) {
                    record(try probe(session: session, decoder: decoder, state: decoder.state, text: decoder.generatedBytes,
                                     favourite: favourite), text: decoder.generatedBytes)
                }
            }
            stats.constraintSeconds += now() - tv
            out.generatedIDs.append(id)
            if model.tokenizer.isEOG(id) { decoder.advance(id); out.finishReason = .stop; break }
            decoder.advance(id)
            let afterID = decoder.state
            let textAfterID = scoreTokens ? decoder.generatedBytes : []
            let f = forced()
            out.generatedIDs += f
            pending = [id] + f
            // The automaton closes a number as soon as no digit can follow (18 under a maximum
            // of 100), so the text, not the state, tells that a number was being written.
            if probing, let departures, !f.isEmpty, let last = V.bytes(of: id).last, JSONSpans.isDigit(last),
               let open = JSONSpans.openValue(textAfterID), JSONSpans.startsNumber(textAfterID[open.valueStart]),
               departures.worthProbing(field: open.key) {
                watch = (afterID, textAfterID)
            }
        }
        out.text = decoder.generatedText
        out.generateSeconds = now() - t1
        stats.decoder = decoder.stats
        return (out, stats)
    }


    /// What the model wanted where the schema refused its favourite token: greedy decoding
    /// without the constraint from `state` (the session holds the KV of `text` and no
    /// more) until the value being written ends, at most `maxProbeTokens` tokens; then the
    /// session is rewound, so constrained decoding goes on as if nothing happened. Nil when
    /// the departure is not inside a value (the model wanted another key or layout, which the
    /// schema decides) or the model wanted to stop.
    static func probe(session: Session, decoder: ConstrainedDecoder, state: SchemaAutomaton.State, text: [UInt8],
                      favourite: Int32) throws(ModelError) -> Departure? {
        guard let valueStart = JSONSpans.openValue(text)?.valueStart else { return nil }
        let V = decoder.vocabulary
        guard V.isEligible(favourite) else { return nil }
        let start = session.position
        defer { session.rewind(to: start) }
        let prefix = Array(text[valueStart...])
        var wanted: [UInt8] = Array(V.bytes(of: favourite))
        var id = favourite
        var steps = 1
        var end = JSONSpans.valueEnd(prefix + wanted)
        while end == nil && steps < maxProbeTokens && session.remaining > 0 {
            let l = try session.feed([id])
            id = Sampler.argmax(UnsafeBufferPointer(l))
            guard V.isEligible(id) else { break }
            wanted += V.bytes(of: id)
            steps += 1
            end = JSONSpans.valueEnd(prefix + wanted)
        }
        // Keep the value only: a bare number or literal ends at the byte after it, which
        // belongs to what follows, as does whatever the model would have written next.
        let scalar = ![UInt8(ascii: "\""), UInt8(ascii: "{"), UInt8(ascii: "[")].contains((prefix + wanted).first ?? 0)
        if let end { wanted = Array(wanted.prefix(max(0, end - prefix.count - (scalar ? 1 : 0)))) }
        // Valid: the schema accepts the same value, only spelled with other tokens (a bare
        // value must also be able to end there: some byte that ends a value may follow).
        var valid = false
        if let s = decoder.automaton.step(state, wanted) {
            valid = end == nil || !scalar || [UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]")].contains { decoder.automaton.step(s, $0) != nil }
        }
        return Departure(offset: text.count, wanted: wanted, complete: end != nil, valid: valid)
    }
}

/// One top-level field of a constrained output and how sure the model was of it.
public struct FieldScore: Sendable, Equatable {
    public var key: String
    /// Probability in [0, 1] under the constraint: how sure the model was among the values
    /// the schema allowed.
    public var confidence: Double
    /// The model's own probability of the same choices, before the schema's mask: low when
    /// it wanted something the schema does not have.
    public var own: Double
    public init(key: String, confidence: Double, own: Double? = nil) {
        self.key = key; self.confidence = confidence; self.own = own ?? confidence
    }
}

/// Per-field confidence of a generated JSON object.
public enum FieldConfidence {
    /// For each top-level key of the compact JSON object `text`, in output order: the
    /// probability of the choices made for that field, i.e. exp(Σ logprob) of the sampled
    /// tokens that start after the previous field's value and no later than the end of this
    /// one (so the token that ends a number, a separator or `}`, counts for the number).
    /// For an enum field this is the probability mass the constrained model gave the value
    /// it chose; `own` is the same choices' probability before the mask. Empty when the
    /// output is not a (complete) object.
    public static func compute(text: [UInt8], sampled: [SampledToken]) -> [FieldScore] {
        guard let spans = JSONSpans.members(text) else { return [] }
        var out: [FieldScore] = []
        var lower = -1  // exclusive; the first field also takes a token starting at the `{`
        for span in spans {
            var lp: Double = 0, mass: Double = 0
            for t in sampled where t.offset > lower && t.offset <= span.end {
                lp += Double(t.logprob)
                mass += Double(t.logMass)
            }
            out.append(FieldScore(key: span.key, confidence: exp(lp), own: exp(lp + mass)))
            lower = span.end
        }
        return out
    }
}
