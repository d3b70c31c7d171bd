import SLMKernels
import SLMModel
import SLMConstraint
#if canImport(Glibc)
import Glibc
#endif
import SLMLimits

// `suggest`: its options, result, validation and runner (the search itself is SuggestSearch.swift).

/// What a suggestion is.
public enum SuggestMode: String, Sendable, Equatable, CaseIterable {
    /// A short phrase: up to `maxWords` words, ending at a sentence end or a line break.
    case phrase
    /// One word: the rest of the word being typed, or the next word after a space
    /// (a keyboard's suggestion chips).
    case word
}

/// How to continue a prefix for a device UI.
public struct SuggestOptions: Sendable, Equatable {
    /// The floor under `minProb` by default: a suggestion the model gives less than one
    /// chance in a million (after what was typed) is noise, not a prediction; four-word
    /// phrases the model finds plausible are ~1e-2…1e-5.
    public static let defaultMinProb = Limits.suggestMinProb.defaultValue!

    /// Suggestions wanted (distinct).
    public var n = Int(Limits.suggestN.defaultValue!)
    /// Most tokens per suggestion.
    public var maxTokens = Int(Limits.suggestMaxTokens.defaultValue!)
    /// Most words per suggestion (a word starts after whitespace); 0: no limit. Phrase mode only.
    public var maxWords = Int(Limits.suggestMaxWords.defaultValue!)
    /// End a suggestion after a sentence end (. ! ?). Phrase mode only.
    public var stopAtSentence: Bool = true
    public var mode: SuggestMode = .phrase
    /// Suggestions less probable than this (given the typed text) are not searched for:
    /// fewer than `n` come back only when the model has nothing above it. In 0...1.
    public var minProb: Double = SuggestOptions.defaultMinProb
    /// Text the model reads before the prefix that is not part of what was typed (a form
    /// field's label, earlier fields). The prefix follows it after a space, or on the next
    /// line when it ends with a line break; suggestions continue the prefix.
    public var context: String?
    public var session: String?
    public var deadline: Double?

    public init(n: Int = Int(Limits.suggestN.defaultValue!), maxTokens: Int = Int(Limits.suggestMaxTokens.defaultValue!),
                maxWords: Int = Int(Limits.suggestMaxWords.defaultValue!), stopAtSentence: Bool = true,
                mode: SuggestMode = .phrase, minProb: Double = SuggestOptions.defaultMinProb, context: String? = nil,
                session: String? = nil, deadline: Double? = nil) {
        self.n = n
        self.maxTokens = maxTokens
        self.maxWords = maxWords
        self.stopAtSentence = stopAtSentence
        self.mode = mode
        self.minProb = minProb
        self.context = context
        self.session = session
        self.deadline = deadline
    }
}

/// One continuation and its probability under the model, given the typed text.
public struct Suggestion: Sendable, Equatable {
    /// Text to insert after the prefix (continues a partial last word when healed).
    public var text: String
    /// log P(suggestion | typed text): Σ log p of its tokens, the first one's renormalised
    /// over the tokens that agree with the healed bytes (word mode: times the probability
    /// that the word ends there).
    public var logprob: Double
    public var tokens: [Int32]
    public var probability: Double { exp(logprob) }
}

public struct SuggestResult: Sendable, Equatable {
    /// Best first, distinct texts.
    public var suggestions: [Suggestion]
    public var promptTokens: Int
    /// Prompt tokens whose KV came from the prefix cache.
    public var reusedTokens: Int
    /// Whether the prompt's last tokens were backed up over (prefix ended mid-word).
    public var healed: Bool
    /// How many tokens were backed up over; the first suggested token starts with their bytes.
    public var healedTokens: Int
    /// Batched forward passes the branches took (0 when every step was replayed).
    public var forwardPasses: Int = 0
    /// Forward passes that fed the context's uncached tokens before the search (0 when its
    /// KV and logits were cached). With `forwardPasses` and `computedTokens`, a keystroke's
    /// work, deterministic for a given history of requests: latency work is measured by it
    /// independent of machine noise.
    public var prefixPasses: Int = 0
    /// Tokens all those passes computed (the context's uncached ones and the branch steps).
    public var computedTokens: Int = 0
    /// Greedy steps replayed from an earlier keystroke on the same healed context.
    public var replayedSteps: Int = 0
    public var ms: Double
}

extension Engine {
    /// Queues a `suggest`: up to `options.n` distinct short continuations of `prefix`,
    /// computed from the shared prefix KV with the branches batched in each pass.
    public func submitSuggest(prefix: String, options: SuggestOptions, owner: UInt32 = 0,
                              completion: @escaping @Sendable (JobOutcome) -> Void) throws(EngineError) -> RequestHandle {
        guard Limits.suggestN.contains(Int64(options.n)) else { throw EngineError(.badRequest, "n must be in \(Limits.suggestN.rangeText)") }
        guard Limits.suggestMaxTokens.contains(Int64(options.maxTokens)) else {
            throw EngineError(.badRequest, "max_tokens must be in \(Limits.suggestMaxTokens.rangeText) for suggest")
        }
        guard Limits.suggestMaxWords.contains(Int64(options.maxWords)) else {
            throw EngineError(.badRequest, "max_words must be in \(Limits.suggestMaxWords.rangeText)")
        }
        guard Limits.suggestMinProb.contains(options.minProb) else {
            throw EngineError(.badRequest, "min_prob must be in \(Limits.suggestMinProb.rangeText)")
        }
        // An empty prefix is a cursor at the start of a field: it predicts first words.
        let ids = suggestContext(prefix: prefix, options).ids
        guard ids.count + options.maxTokens <= config.maxContext else {
            throw EngineError(.contextOverflow, "context + prefix (\(ids.count) tokens) + max_tokens exceed the context of \(config.maxContext)")
        }
        let need = kvBytes(tokens: ids.count) + (options.n + 2) * kvBytes(tokens: ids.count + options.maxTokens)
        guard need <= kvBudget else {
            throw EngineError(.overMemoryBudget, "suggest needs \(need) bytes of KV; the budget leaves \(kvBudget)")
        }
        return try enqueue(.suggest(text: prefix, options), deadline: options.deadline, session: options.session, owner: owner,
                           completion: completion)
    }

    func runSuggest(_ job: Job, text: String, _ o: SuggestOptions) {
        // The outcome is delivered after `suggest` has returned its KV (its defers ran), so
        // a client that reads stats after the reply sees the memory already released.
        job.completion(suggest(job, text: text, o))
    }
}
