#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Perplexity the way llama-perplexity computes it, so figures compare directly.
///
/// The token stream is cut into ⌊n/ctx⌋ chunks of `ctx` tokens (the tail is dropped);
/// each chunk starts from an empty cache with no BOS (this model does not add one); only
/// the second half is scored: for j in ctx/2 ..< ctx−1 the negative log-likelihood of
/// token j+1 given tokens 0...j. PPL = exp(mean NLL).
public enum Perplexity {
    public struct Result: Sendable, Equatable {
        public let ppl: Double
        /// Tokens scored.
        public let scored: Int
        public let chunks: Int
        /// PPL over chunks 0...i, as llama-perplexity prints it.
        public let runningEstimate: [Double]
    }

    public static func evaluate(runner: Runner, tokens: [Int32], context ctx: Int,
                                progress: ((Int, Int) -> Void)? = nil) throws(ModelError) -> Result {
        guard ctx >= 4, ctx % 2 == 0 else { throw ModelError("perplexity context must be an even number >= 4, got \(ctx)") }
        let chunks = tokens.count / ctx
        guard chunks > 0 else { throw ModelError("text has \(tokens.count) tokens, fewer than one chunk of \(ctx)") }
        let session = Session(runner: runner, capacity: ctx)
        let first = ctx / 2
        var nll: Double = 0
        var count = 0
        var running: [Double] = []
        for c in 0..<chunks {
            let chunk = Array(tokens[c * ctx ..< (c + 1) * ctx])
            session.rewind(to: 0)
            try session.feed(chunk, logitsFrom: first) { j, logits in
                guard j < ctx - 1 else { return }
                nll += negativeLogLikelihood(logits, target: Int(chunk[j + 1]))
                count += 1
            }
            running.append(exp(nll / Double(count)))
            progress?(c + 1, chunks)
        }
        return Result(ppl: exp(nll / Double(count)), scored: count, chunks: chunks, runningEstimate: running)
    }

    /// −log softmax(logits)[target], with the normaliser summed in double.
    public static func negativeLogLikelihood(_ logits: UnsafeMutableBufferPointer<Float>, target: Int) -> Double {
        var m = -Float.infinity
        for v in logits { m = max(m, v) }
        var sum: Double = 0
        for v in logits { sum += Double(expf(v - m)) }
        return log(sum) - Double(logits[target] - m)
    }
}
