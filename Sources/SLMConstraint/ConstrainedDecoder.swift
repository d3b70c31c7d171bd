#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Constrained decoding for one request: which tokens keep the output a valid document of
/// the schema, from the current automaton state.
///
/// The engine's loop (see `ConstrainedGenerator`):
/// 1. sample from the raw logits; if `allows(token)` take it (sample-then-verify: no mask is
///    computed on the common path);
/// 2. otherwise `applyMask(logits)` and sample again. For greedy decoding this is exactly
///    the masked argmax; for temperature sampling the two-step draw has exactly the masked
///    distribution (an allowed t is drawn with p(t) + (1 − Z)·p(t)/Z = p(t)/Z, Z the allowed
///    mass), up to top-k/top-p truncation being applied before rather than after masking;
/// 3. `advance(token)`, then append `forcedTokens()` (advancing each) and feed the sampled
///    token and the forced ones as one batch;
/// 4. stop when `isComplete`. The engine simply stops there: an end-of-generation token is
///    allowed (and is then the only allowed token) but never needs to be sampled. It is also
///    allowed when the document is whole but could be extended (`isAccepting`: a bare root
///    number such as `12` could become `123`), and then ends generation.
///
/// Masks: one preorder scan of the vocabulary trie (`ConstraintVocabulary`), stepping a copy
/// of the automaton per trie node and skipping a subtree at its first refused byte. Masks
/// are cached per state; counters that a single token cannot exhaust (characters left under
/// `maxLength`, items left under `maxItems`, beyond `maxTokenBytes`) are clamped in the cache
/// key, so a free string's mask is computed once and reused for every later position. A
/// `MaskCache` shares masks between requests on the same schema.
///
/// Inside a string at a character boundary the scan takes a fast path: tokens that are
/// plain string content (`ConstraintVocabulary.plainChars`) are decided by their character
/// count, and only trie subtrees holding other tokens (quotes, backslashes, partial UTF-8)
/// are walked.
public final class ConstrainedDecoder: @unchecked Sendable {
    // @unchecked: one request, one thread at a time.
    typealias Frame = SchemaAutomaton.Frame
    public let automaton: SchemaAutomaton
    public let vocabulary: ConstraintVocabulary
    public private(set) var state: SchemaAutomaton.State
    public private(set) var generatedBytes: [UInt8] = []
    /// Set once an end-of-generation token has been advanced over.
    public private(set) var ended = false
    /// Most masks kept; the cache is emptied when full (states come in runs, so the recent
    /// ones are what matter). 128 masks of 49,152 bits are 768 KiB.
    public var maxCachedMasks = 128
    public private(set) var stats = Stats()

    public struct Stats: Sendable, Equatable {
        /// Full masks computed by scanning the trie.
        public var masksComputed = 0
        /// Masks served from this decoder's cache.
        public var maskCacheHits = 0
        /// Masks served from the shared `MaskCache`.
        public var sharedCacheHits = 0
        /// Trie nodes visited by all scans.
        public var trieNodesVisited = 0
        /// Calls to `allows`.
        public var verifications = 0

        public init() {}
    }

    /// Off only to measure what the string fast path saves (see `computeMask`).
    var useStringFastPath = true
    private var cache: [SchemaAutomaton.State: [UInt64]] = [:]
    /// Scratch for the scan: one frame stack per trie depth.
    private let levels: UnsafeMutablePointer<Frame>
    private let levelDepth: UnsafeMutablePointer<Int>
    private let stride: Int
    private let levelCount: Int
    private var mask: [UInt64]

    /// Masks shared with other requests on the same schema, consulted after this decoder's own.
    public let sharedCache: MaskCache?

    public init(automaton: SchemaAutomaton, vocabulary: ConstraintVocabulary, sharedCache: MaskCache? = nil) {
        if let c = sharedCache {
            precondition(c.automaton == ObjectIdentifier(automaton) && c.vocabulary == ObjectIdentifier(vocabulary),
                         "MaskCache belongs to another automaton or vocabulary")
        }
        self.automaton = automaton
        self.vocabulary = vocabulary
        self.sharedCache = sharedCache
        state = automaton.initialState
        stride = automaton.maxDepth
        levelCount = vocabulary.maxTokenBytes + 1
        levels = .allocate(capacity: stride * levelCount)
        levels.initialize(repeating: Frame(), count: stride * levelCount)
        levelDepth = .allocate(capacity: levelCount)
        levelDepth.initialize(repeating: 0, count: levelCount)
        mask = [UInt64](repeating: 0, count: (vocabulary.vocabSize + 63) / 64)
    }

    /// A decoder positioned at `state` (tests and tools exploring arbitrary states).
    convenience init(automaton: SchemaAutomaton, vocabulary: ConstraintVocabulary, state: SchemaAutomaton.State) {
        self.init(automaton: automaton, vocabulary: vocabulary)
        self.state = state
    }

    deinit {
        levels.deallocate()
        levelDepth.deallocate()
    }

    /// The root value is closed: generation must stop now.
    public var isComplete: Bool { automaton.isComplete(state) }
    /// The output is a whole valid document (an end-of-generation token is allowed).
    public var isAccepting: Bool { automaton.isAccepting(state) }
    public var generatedText: String { String(decoding: generatedBytes, as: UTF8.self) }

    /// Whether `token` keeps the output valid from the current state.
    public func allows(_ token: Int32) -> Bool {
        stats.verifications += 1
        return check(token)
    }

    private func check(_ token: Int32) -> Bool {
        if vocabulary.isEndOfGeneration(token) { return automaton.isAccepting(state) && !ended }
        guard vocabulary.isEligible(token), !ended else { return false }
        return stepCopy(vocabulary.bytes(of: token)) != nil
    }

    /// The state after `bytes` from the current one, or nil (uses level 0 of the scratch).
    private func stepCopy(_ bytes: ArraySlice<UInt8>) -> Int? {
        state.frames.withUnsafeBufferPointer { levels.update(from: $0.baseAddress!, count: state.depth) }
        var depth = state.depth
        for b in bytes where !automaton.step(levels, &depth, b) { return nil }
        return depth
    }

    /// At the start of a value that may be a number or null: whether null is then the only
    /// other choice. Nil where that rule has nothing to decide (see `ConstrainedGenerator`'s
    /// `noNumbers`).
    public func nullInsteadOfNumber() -> Bool? {
        guard !ended, automaton.isValueStart(state) else { return nil }
        let bytes = automaton.allowedBytes(state)
        guard bytes.contains(UInt8(ascii: "n")), bytes.contains(where: JSONSpans.startsNumber) else { return nil }
        return bytes.allSatisfy { $0 == UInt8(ascii: "n") || JSONSpans.startsNumber($0) }
    }

    /// Advances by an accepted token (precondition: `allows(token)`). An end-of-generation
    /// token ends the request; the automaton state is unchanged.
    public func advance(_ token: Int32) {
        precondition(check(token), "token \(token) is not allowed here")
        if vocabulary.isEndOfGeneration(token) { ended = true; return }
        let bytes = vocabulary.bytes(of: token)
        var depth = state.depth
        state.frames.withUnsafeMutableBufferPointer { buf in
            for b in bytes { _ = automaton.step(buf.baseAddress!, &depth, b) }
        }
        state.depth = depth
        generatedBytes.append(contentsOf: bytes)
    }

    /// Sets the logits of disallowed tokens to -inf.
    public func applyMask(_ logits: UnsafeMutableBufferPointer<Float>) {
        let words = currentMask()
        words.withUnsafeBufferPointer { w in
            let n = min(logits.count, vocabulary.vocabSize)
            var i = 0
            while i < n {
                let word = w[i >> 6]
                if word == ~0 { i += 64; continue }
                let end = min(n, (i & ~63) + 64)
                while i < end {
                    if word & (1 << UInt64(i & 63)) == 0 { logits[i] = -.infinity }
                    i += 1
                }
            }
        }
    }

    /// ln of `token`'s probability in the softmax of `logits` restricted to the tokens allowed
    /// now (logits of disallowed tokens are ignored, so it works on masked logits too).
    public func maskedLogProb(of token: Int32, _ logits: UnsafeMutableBufferPointer<Float>) -> Float {
        maskedScores(of: token, logits).logprob
    }

    /// `maskedLogProb` and ln Σ exp(logit) over the allowed tokens (with the unconstrained
    /// log-sum-exp, the share of the model's probability the schema allowed).
    public func maskedScores(of token: Int32, _ logits: UnsafeMutableBufferPointer<Float>) -> (logprob: Float, logSumAllowed: Float) {
        let words = currentMask()
        let n = min(logits.count, vocabulary.vocabSize)
        func forEachAllowed(_ body: (Int) -> Void) {
            words.withUnsafeBufferPointer { w in
                for wi in 0..<((n + 63) >> 6) {
                    var word = w[wi]
                    while word != 0 {
                        let i = wi << 6 | word.trailingZeroBitCount
                        word &= word - 1
                        if i < n { body(i) }
                    }
                }
            }
        }
        var maxL = -Float.infinity
        forEachAllowed { if logits[$0] > maxL { maxL = logits[$0] } }
        guard maxL.isFinite, Int(token) < n else { return (0, 0) }
        var sum: Double = 0
        forEachAllowed { sum += Double(expf(logits[$0] - maxL)) }
        return (Float(Double(logits[Int(token)] - maxL) - log(sum)), maxL + Float(log(sum)))
    }

    /// The allowed-token bitset for the current state (bit i of word i/64: token i allowed).
    public func currentMask() -> [UInt64] {
        if ended {  // nothing may follow an end-of-generation token; not a state to cache
            computeMask()
            return mask
        }
        let key = cacheKey(state)
        if let m = cache[key] {
            stats.maskCacheHits += 1
            return m
        }
        if let m = sharedCache?.get(key) {
            stats.sharedCacheHits += 1
            remember(key, m)
            return m
        }
        computeMask()
        remember(key, mask)
        sharedCache?.put(key, mask)
        return mask
    }

    private func remember(_ key: SchemaAutomaton.State, _ m: [UInt64]) {
        if cache.count >= maxCachedMasks { cache.removeAll(keepingCapacity: true) }
        cache[key] = m
    }

    /// The allowed set as token ids, ascending (tests and tools).
    public func allowedTokens() -> [Int32] {
        let m = currentMask()
        return (0..<vocabulary.vocabSize).compactMap { i in m[i >> 6] & (1 << UInt64(i & 63)) != 0 ? Int32(i) : nil }
    }

    /// Fills `mask` by one preorder scan of the trie: node i's state is its parent's (at
    /// level depth−1) stepped by the node's byte; a refused byte skips the whole subtree.
    func computeMask() {
        stats.masksComputed += 1
        for i in mask.indices { mask[i] = 0 }
        if !ended {
            if automaton.isAccepting(state) {
                for id in vocabulary.eogIDs { mask[Int(id) >> 6] |= 1 << UInt64(id & 63) }
            }
            state.frames.withUnsafeBufferPointer { levels.update(from: $0.baseAddress!, count: state.depth) }
            levelDepth[0] = state.depth
            let V = vocabulary
            let nodeCount = V.nodeByte.count
            var visited = 0
            V.nodeByte.withUnsafeBufferPointer { nodeByte in
            V.nodeDepth.withUnsafeBufferPointer { nodeDepth in
            V.subtreeEnd.withUnsafeBufferPointer { subtreeEnd in
            V.nodeTokenStart.withUnsafeBufferPointer { tokStart in
            V.nodeTokens.withUnsafeBufferPointer { tokens in
            V.subtreeHasNonPlain.withUnsafeBufferPointer { nonPlain in
            mask.withUnsafeMutableBufferPointer { m in
                // Fast path inside a string at a character boundary: plain-content tokens are
                // decided by their character count alone; the scan then visits only subtrees
                // holding other tokens (quotes, backslashes, control bytes, partial UTF-8).
                let top = state.depth > 0 ? state.frames[state.depth - 1] : Frame()
                let inString = useStringFastPath && top.kind == .string && top.phase == SchemaAutomaton.Str.content
                if inString {
                    let room = Int(automaton.nodes[Int(top.node)].maxLength - top.a)
                    V.plainChars.withUnsafeBufferPointer { plain in
                        for id in 0..<plain.count where plain[id] >= 0 && Int(plain[id]) <= room {
                            m[id >> 6] |= 1 << UInt64(id & 63)
                        }
                    }
                }
                var i = 1
                while i < nodeCount {
                    if inString && !nonPlain[i] {
                        i = Int(subtreeEnd[i])
                        continue
                    }
                    visited += 1
                    let d = Int(nodeDepth[i])
                    let parent = levels + (d - 1) * stride
                    let here = levels + d * stride
                    var depth = levelDepth[d - 1]
                    here.update(from: parent, count: depth)
                    if depth > 0 && automaton.step(here, &depth, nodeByte[i]) {
                        levelDepth[d] = depth
                        for t in Int(tokStart[i])..<Int(tokStart[i + 1]) {
                            let id = Int(tokens[t])
                            m[id >> 6] |= 1 << UInt64(id & 63)
                        }
                        i += 1
                    } else {
                        i = Int(subtreeEnd[i])
                    }
                }
            }}}}}}}
            stats.trieNodesVisited += visited
        }
    }

    /// The state with counters clamped where one token cannot tell the difference, so equal
    /// keys always have equal masks: a token has at most `maxTokenBytes` bytes, so it can
    /// add at most that many characters or array items.
    private func cacheKey(_ s: SchemaAutomaton.State) -> SchemaAutomaton.State {
        var k = s
        let K = Int32(vocabulary.maxTokenBytes)
        for i in 0..<k.depth {
            let f = k.frames[i]
            switch f.kind {
            case .string:
                let max = automaton.nodes[Int(f.node)].maxLength
                k.frames[i].a = max - Swift.min(max - f.a, K)
            case .array:
                let max = automaton.nodes[Int(f.node)].maxItems
                k.frames[i].a = max - Swift.min(max - f.a, K)
            default:
                break
            }
        }
        return k
    }

    /// Tokens for the only possible continuation from here (empty when there is a choice).
    ///
    /// The forced text runs while exactly one byte can follow and the document is not yet
    /// acceptable; it is tokenized with the model's tokenizer (`parseSpecial: false`), so the
    /// model sees the tokens it would see for that text. Boundary rule: the last token is
    /// left out when the first free byte after the stretch could belong to the same
    /// pre-token (both letters, both digits, or both punctuation), because the model would
    /// then naturally write one merged token across the boundary (`":"` + `[` as `":["`);
    /// after a quote or colon followed by a letter or digit (the usual case: `"action":"` then
    /// `turn_on`) nothing is left out. Forced text that starts mid-word (a unique enum
    /// completion after the model chose a prefix) is still forced: the model chose that prefix.
    /// The caller advances over the returned tokens.
    public func forcedTokens() -> [Int32] {
        guard !ended else { return [] }
        var s = state
        var text: [UInt8] = []
        var nextFree: [UInt8] = []
        while !automaton.isAccepting(s) {
            guard let only = automaton.onlyAllowedByte(s) else {
                nextFree = automaton.allowedBytes(s)
                break
            }
            text.append(only)
            s = automaton.step(s, only)!
        }
        // A stretch that ends inside a UTF-8 character cannot be tokenized on its own.
        while let last = text.last, last >= 0x80 { text.removeLast() }
        guard !text.isEmpty else { return [] }
        var ids = vocabulary.tokenizer.encode(String(decoding: text, as: UTF8.self), parseSpecial: false)
        var round: [UInt8] = []
        for id in ids {
            guard vocabulary.isEligible(id) else { return [] }
            round.append(contentsOf: vocabulary.bytes(of: id))
        }
        guard round == text else { return [] }  // a byte the vocabulary lacks
        if let lastID = ids.last, let lastByte = vocabulary.bytes(of: lastID).last,
           nextFree.contains(where: { Self.sameClass($0, lastByte) }) {
            ids.removeLast()
        }
        return ids
    }

    static func byteClass(_ b: UInt8) -> Int {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), 0x80...: return 0
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return 1
        case 0x09, 0x0A, 0x0D, 0x20: return 2
        default: return 3
        }
    }

    static func sameClass(_ a: UInt8, _ b: UInt8) -> Bool { byteClass(a) == byteClass(b) }
}
