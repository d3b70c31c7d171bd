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
}

/// `Generator.run` with a `ConstrainedDecoder`: the loop a CLI or test uses (the daemon's
/// scheduler performs the same steps per sequence).
public enum ConstrainedGenerator {
    /// Generates after `promptIDs` until the document is complete (`finishReason == .stop`)
    /// or `options.maxTokens` output tokens (`.length`, the output then is an unfinished
    /// prefix of a valid document). Stop strings do not apply: the schema decides the end.
    public static func run(model: Model, session: Session, promptIDs: [Int32], decoder: ConstrainedDecoder,
                           options: GenerationOptions, now: () -> Double) throws(ModelError) -> (GenerationOutput, ConstraintStats) {
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
