import SLMKernels
import SLMModel
#if canImport(Glibc)
import Glibc
#endif

// `suggest`: n distinct continuations of what was typed, by a best-first search over the
// token tree.
//
// The tree's root is the healed context (the prefix without the tokens of its last,
// partial word); a node is a path of tokens after it, with its probability given the typed
// text. The search keeps a queue of open nodes, most probable first. It takes the best one
// and rolls it out: follows the likeliest token, as greedy decoding would, until the
// suggestion ends (sentence end, line break, max_words, max_tokens; in word mode, the end of
// the word). Every other token met on the way (the runners-up of each step) goes into the
// queue as an alternative. Rollouts go on, best alternative first, until n distinct
// suggestions are finished (then while an alternative is so much more probable than the n-th
// suggestion that it could replace it) or no alternative is above the probability floor.
// Suggestions are returned by their own probability, best first. So the search
// branches wherever the model has alternatives — at the first token or deeper — and a
// prefix that is already a whole word (`…my mother tomorrow`), whose first token can only be
// that word, still gets n different continuations, each as cheap as a greedy one.
//
// Costs: a step is one logits row. The rows the next rollouts need are computed together in
// one batched forward pass (the current rollout's next step and, speculatively, those of the
// next ones in the queue), and every step's row summary is kept in `SuggestMemo`, so the
// keystrokes inside a word, which search the same tree again, replay it without a pass.
// Which rows are computed when never changes the result: the search itself only reads the
// memo.

/// Whether a byte belongs to a word for word mode: letters, digits, an apostrophe (don't,
/// mother's) and any non-ASCII byte (letters of other scripts).
@inline(__always) func isWordByte(_ b: UInt8) -> Bool {
    let lower = b | 0x20
    return (b >= 0x30 && b <= 0x39) || (lower >= 0x61 && lower <= 0x7A) || b >= 0x80 || b == 0x27
}

/// Whether text ending with these bytes ends a sentence: `.`, `!` or `?`, possibly followed
/// by closing quotes or brackets (`."` ends one as well as `.`).
func isSentenceEnd(_ bytes: ArraySlice<UInt8>) -> Bool {
    var end = bytes.endIndex
    while end > bytes.startIndex {
        let b = bytes[end - 1]
        if b == 0x22 || b == 0x27 || b == 0x29 || b == 0x5D {
            end -= 1
        } else if b == 0x9D || b == 0x99, end - bytes.startIndex >= 3, bytes[end - 3] == 0xE2, bytes[end - 2] == 0x80 {
            end -= 3  // ” or ’
        } else {
            return b == 0x2E || b == 0x21 || b == 0x3F
        }
    }
    return false
}

/// What makes two suggestions the same one for the user: the text without surrounding
/// whitespace and trailing punctuation (`morning.` and `morning."` are one suggestion, the
/// more probable shown); a text of punctuation only is its first character.
func suggestionKey(_ text: String) -> String {
    let trimmed = text.trimmingWhitespace()
    var s = Substring(trimmed)
    while let last = s.last, last.isPunctuation || last.isWhitespace { s = s.dropLast() }
    if s.isEmpty, let first = trimmed.first { return String(first) }
    return String(s)
}

/// What the search checks for every child it looks at, precomputed per token.
struct TokenTraits: Sendable {
    private let flags: UInt8
    /// Runs of non-space bytes in the token: the words it starts (one fewer when it
    /// continues the word before it).
    let runs: UInt8

    private static let startsWithSpaceBit: UInt8 = 1, newlineBit: UInt8 = 2, specialBit: UInt8 = 4
    private static let continuesWordBit: UInt8 = 8, endsSentenceBit: UInt8 = 16, endsWithSpaceBit: UInt8 = 32

    init(_ bytes: [UInt8], special: Bool) {
        var f: UInt8 = 0
        if let b = bytes.first, isSpace(b) { f |= Self.startsWithSpaceBit }
        if bytes.contains(0x0A) { f |= Self.newlineBit }
        if special { f |= Self.specialBit }
        if !special, let b = bytes.first, isWordByte(b) { f |= Self.continuesWordBit }
        if isSentenceEnd(bytes[...]) { f |= Self.endsSentenceBit }
        if let b = bytes.last, isSpace(b) { f |= Self.endsWithSpaceBit }
        flags = f
        runs = UInt8(min(255, wordCount(bytes)))
    }

    var startsWithSpace: Bool { flags & Self.startsWithSpaceBit != 0 }
    var hasNewline: Bool { flags & Self.newlineBit != 0 }
    /// A control or end-of-generation token: never part of a suggestion's text.
    var special: Bool { flags & Self.specialBit != 0 }
    /// Starts with a word byte (and is not special): it continues a word it follows.
    var continuesWord: Bool { flags & Self.continuesWordBit != 0 }
    /// It ends a sentence (see `isSentenceEnd`).
    var endsSentence: Bool { flags & Self.endsSentenceBit != 0 }
    var endsWithSpace: Bool { flags & Self.endsWithSpaceBit != 0 }
}

/// One node of the search: a path of tokens after the healed context.
struct SuggestNode {
    /// The node one token shorter, or −1 for a first token.
    var parent: Int32
    var token: Int32
    /// The memo entry of the parent's path (`SuggestMemo.root` for a first token).
    var memoParent: Int32
    /// This path's memo entry once its row is known, else −1.
    var memo: Int32 = -1
    /// log P(path | typed text).
    var logprob: Double
    var depth: Int32
    /// Words in its text (phrase mode's `max_words`).
    var words: Int32
    /// Its text ends inside a word (the next token continues that word unless it starts
    /// with a space).
    var inWord: Bool
    /// Its text is not empty (a first token may be exactly the healed bytes).
    var hasText: Bool
    /// A finished suggestion: taken from the queue, it is a result; otherwise it is rolled out.
    var complete: Bool
}

/// One branch KV cache in use by a search: `tokens` (context and path) are what it holds
/// once the pending pass has run; `valid` how many of them it holds now.
struct BranchSlot {
    let cache: KVCache
    var tokens: [Int32]
    var valid: Int
    var busy = false
}

/// The search's working arrays, kept by the engine between requests (their capacity is
/// reused: a search allocates nothing once they have grown).
struct SuggestScratch {
    var nodes: [SuggestNode] = []
    /// Node indices, a binary max-heap by (logprob, then lower index).
    var heap: [Int32] = []
    var selected: [Int32] = []
    var order: [Int32] = []
    var path: [Int32] = []
    var target: [Int32] = []
    var topIDs = [Int32](repeating: -1, count: SuggestMemo.width)
    var topValues = [Float](repeating: 0, count: SuggestMemo.width)

    mutating func clear() {
        nodes.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        selected.removeAll(keepingCapacity: true)
    }

    @inline(__always) func before(_ a: Int32, _ b: Int32) -> Bool {
        let x = nodes[Int(a)].logprob, y = nodes[Int(b)].logprob
        return x > y || (x == y && a < b)
    }

    mutating func push(_ node: SuggestNode) {
        heap.append(add(node))
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard before(heap[i], heap[p]) else { break }
            heap.swapAt(i, p)
            i = p
        }
    }

    mutating func pop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var best = i
            if l < heap.count && before(heap[l], heap[best]) { best = l }
            if r < heap.count && before(heap[r], heap[best]) { best = r }
            if best == i { return }
            heap.swapAt(i, best)
            i = best
        }
    }

    /// Adds a node without queueing it (a rollout's next step, a finished suggestion).
    mutating func add(_ node: SuggestNode) -> Int32 {
        nodes.append(node)
        return Int32(nodes.count - 1)
    }

    /// `order` = the queue, best first.
    mutating func sortQueue() {
        // Sorted in a buffer moved out of `order` (the comparison reads `nodes`).
        var sorted = order
        order = []
        sorted.removeAll(keepingCapacity: true)
        sorted.append(contentsOf: heap)
        sorted.sort { before($0, $1) }
        order = sorted
    }

    /// `path` = the node's tokens, first to last.
    mutating func loadPath(_ node: Int32) {
        path.removeAll(keepingCapacity: true)
        var i = node
        while i >= 0 {
            path.append(nodes[Int(i)].token)
            i = nodes[Int(i)].parent
        }
        path.reverse()
    }
}

@inline(__always) func sharedPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
    let limit = min(a.count, b.count)
    var n = 0
    while n < limit && a[n] == b[n] { n += 1 }
    return n
}

extension Engine {
    /// What the model reads for a suggest: the context tokens (`context`, then the prefix
    /// without its healed last tokens; `documentStart` when that leaves nothing), the
    /// healed bytes the first suggested token must start with, how many tokens were healed,
    /// and how many of the healed bytes were not typed (the space after the context).
    func suggestContext(prefix: String, _ o: SuggestOptions)
        -> (ids: [Int32], heal: [UInt8], healedTokens: Int, untyped: Int) {
        let tok = model.tokenizer
        var ids: [Int32] = []
        var typed = prefix
        var untyped = 0
        if let c = o.context {
            var text = Substring(c)
            while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
            if !text.isEmpty {
                ids = tok.encode(String(text), parseSpecial: false)
                // The field's text follows the context on its line after a space, as a
                // label's value does ("Subject: Leak under…"), or starts the next line when
                // the context ends with one. The space is tokenized with the prefix (its
                // first word's token carries it) and healed, so no suggestion starts with it.
                if text.utf8.last != 0x0A {
                    typed = " " + prefix
                    untyped = 1
                }
            }
        }
        let typedIDs = tok.encode(typed, parseSpecial: false)
        // Token healing: text typed so far usually ends inside a word (or with a space the
        // next word's token would have absorbed), i.e. with a token the model would rarely
        // produce there. Back up over the last token and make the first suggested token
        // start with its bytes, so the suggestion continues the word. The removed token
        // itself stays a candidate, so nothing is lost when the word was complete. A partial
        // word can span several tokens (" toni" is " ton" + "i"): back up over the tokens of
        // the current word (at most 3) as long as some token still starts with everything
        // removed, so " tonight" can follow.
        var heal: [UInt8] = []
        var healedTokens = 0
        var removed: [UInt8] = []
        var k = 1
        while k <= min(3, typedIDs.count) {
            removed = tokenBytes[Int(typedIDs[typedIDs.count - k])] + removed
            if k == 1 || !tokens(startingWith: removed).isEmpty {
                heal = removed
                healedTokens = k
            }
            if let first = removed.first, isSpace(first) { break }  // reached the word's start
            k += 1
        }
        ids += typedIDs.dropLast(healedTokens)
        // Nothing before the cursor: predict what a text starts with.
        if ids.isEmpty { ids = [documentStart] }
        // The space after the context is among the healed bytes when every typed token was.
        return (ids, heal, healedTokens, healedTokens == typedIDs.count ? untyped : 0)
    }

    /// The first tokens: the `SuggestMemo.width` likeliest tokens that agree with the
    /// healed bytes (ties to the lower id; no end-of-generation token), into `out`, and log
    /// Σ exp(logit) over every token that agrees: the healed constraint's mass, which turns
    /// a first token's logit into its probability given the typed text.
    ///
    /// A token agrees when its bytes start with the healed bytes. With none (an empty
    /// prefix: the start of a field) every token agrees except those starting with
    /// whitespace, which a field's text does not.
    func firstTokens(_ l: UnsafeBufferPointer<Float>, heal: [UInt8], into out: inout [(id: Int32, logit: Float)]) -> Double {
        let range = tokens(startingWith: heal)
        let tok = model.tokenizer
        let k = SuggestMemo.width
        out.removeAll(keepingCapacity: true)
        var m = -Float.infinity
        for idx in range {
            let id = tokensByBytes[idx]
            if heal.isEmpty && tokenTraits[Int(id)].startsWithSpace { continue }
            let v = l[Int(id)]
            m = max(m, v)
            if tok.isEOG(id) { continue }
            // Higher logit first, ties to the lower id (the order of a scan by id).
            @inline(__always) func before(_ a: (id: Int32, logit: Float)) -> Bool { v > a.logit || (v == a.logit && id < a.id) }
            if out.count == k && !before(out[k - 1]) { continue }
            var pos = out.count
            while pos > 0 && before(out[pos - 1]) { pos -= 1 }
            out.insert((id, v), at: pos)
            if out.count > k { out.removeLast() }
        }
        guard m.isFinite else { return -.infinity }
        // Σ exp(l − m) over the agreeing tokens, 8 gathered lanes at a time (after a space
        // that is ~20k tokens).
        let mv = SIMD8<Float>(repeating: m)
        var sum = 0.0
        var lanes = SIMD8<Float>()
        var n = 0
        for idx in range {
            let id = tokensByBytes[idx]
            if heal.isEmpty && tokenTraits[Int(id)].startsWithSpace { continue }
            lanes[n] = l[Int(id)]
            n += 1
            if n == 8 {
                sum += Double(FastMath.exp(lanes - mv).sum())
                n = 0
            }
        }
        for i in 0..<n { sum += Double(expf(lanes[i] - m)) }
        return Double(m) + log(sum)
    }

    func suggest(_ job: Job, text: String, _ o: SuggestOptions) -> JobOutcome {
        let t0 = monotonicSeconds()
        var trace = SuggestTrace(enabled: suggestTraceEnabled, start: t0)
        defer { trace.emit() }
        scopeSuggestCaches(to: job.handle.owner)
        let (ids, heal, healedTokens, untyped) = suggestContext(prefix: text, o)
        trace.mark(.heal)
        // A keystroke inside a word usually leaves the healed context unchanged: its KV and
        // final logits are then cached whole, and no forward pass is needed to start.
        let base: KVCache
        let reused: Int
        let first: [Float]
        var ownsBase = false
        if let hit = prefixCache.exact(ids, owner: job.handle.owner) {
            base = hit.cache
            reused = ids.count
            first = hit.lastLogits!
            lock.withLock {
                shared.stats.prefixCacheHits += 1
                shared.stats.prefixCacheReusedTokens += ids.count
            }
        } else if let start = branchStart(for: ids) {
            // The previous keystroke's branch already ran this context (the user typed its
            // first token): its KV and first-pass logits start this one without a pass.
            base = start.cache
            reused = ids.count
            first = start.logits
            ownsBase = true
            lock.withLock {
                shared.stats.prefixCacheHits += 1
                shared.stats.prefixCacheReusedTokens += ids.count
            }
        } else {
            // Room for a few more tokens: when the next word is typed, its context extends
            // this one and takes this cache over from the prefix cache instead of copying it.
            let roomy = min(config.maxContext, (ids.count + 1 + 31) / 32 * 32)
            guard let acquired = acquireCache(for: ids, capacity: roomy, owner: job.handle.owner)
                    ?? acquireCache(for: ids, capacity: ids.count, owner: job.handle.owner) else {
                return .ended(.error, "not enough memory for the prefix now; try again")
            }
            (base, reused) = acquired
            ownsBase = true
            do {
                first = try prefill(ids, from: reused, into: base)
            } catch {
                retire(base, tokens: ids, owner: job.handle.owner)
                return .ended(.error, "\(error)")
            }
        }
        trace.prefillTokens = ids.count - reused
        trace.mark(.prefill)
        defer { if ownsBase { retire(base, tokens: ids, owner: job.handle.owner, lastLogits: first) } }
        if let r = interruption(job) { return .ended(r, nil) }

        // The search's arrays are moved out of the engine for its duration: the engine
        // methods it calls then never touch the property it is mutating.
        var s = suggestScratch
        suggestScratch = SuggestScratch()
        // The row buffers are held apart from `s`, which the local functions below capture:
        // writing them while `s.nodes` is updated would be two accesses to one variable.
        var topIDs: [Int32] = [], topValues: [Float] = []
        swap(&topIDs, &s.topIDs)
        swap(&topValues, &s.topValues)
        defer {
            swap(&topIDs, &s.topIDs)
            swap(&topValues, &s.topValues)
            suggestScratch = s
        }
        s.clear()

        let word = o.mode == .word
        let floor = o.minProb > 0 ? log(o.minProb) : -Double.infinity
        let traits = tokenTraits
        // Steps the search may take: 2(n + 2) full rollouts, twice the rows n + 2 greedy
        // branches would take. It bounds the work when rollouts keep finding suggestions
        // already found (`tomorrow.` and `tomorrow."` are one).
        let maxSteps = 2 * (o.n + 2) * o.maxTokens
        // Rows per pass: as many branches as the admission check reserved KV for.
        let rowsPerPass = min(o.n + 2, runner.maxLogits)
        suggestMemo.begin(context: ids, room: maxSteps + rowsPerPass)

        var firsts: [(id: Int32, logit: Float)] = []
        firsts.reserveCapacity(SuggestMemo.width + 1)
        let logZ = first.withUnsafeBufferPointer { firstTokens($0, heal: heal, into: &firsts) }
        for (id, logit) in firsts {
            let lp = Double(logit) - logZ
            guard lp >= floor else { break }  // best first: the rest are lower
            var rest = tokenBytes[Int(id)].dropFirst(heal.count)
            var node = SuggestNode(parent: -1, token: id, memoParent: SuggestMemo.root, logprob: lp, depth: 1,
                                   words: 0, inWord: false, hasText: !rest.isEmpty, complete: false)
            if word {
                // A word: the rest of the healed word, or (after a space) a whole new one.
                if let b = rest.first, !isWordByte(b) { continue }
            } else {
                // A line break ends a suggestion (a UI line does not continue past it).
                if let nl = rest.firstIndex(of: 0x0A) {
                    rest = rest[..<nl]
                    node.complete = true
                    node.hasText = !rest.isEmpty
                }
                node.words = Int32(wordCount(Array(rest)))
                node.inWord = rest.last.map { !isSpace($0) } ?? false
                if o.maxTokens == 1 || (o.stopAtSentence && isSentenceEnd(rest)) {
                    node.complete = true
                }
            }
            s.push(node)
        }
        trace.mark(.candidates)

        var results: [Suggestion] = []
        var keys: [String] = []
        var steps = 0
        var slots: [BranchSlot] = []
        slots.reserveCapacity(rowsPerPass)
        let firstIDs = firsts.map(\.id)
        var rows: [(node: Int32, slot: Int)] = []
        rows.reserveCapacity(rowsPerPass)
        defer {
            for slot in slots { poolBranchCache(slot.cache, tokens: slot.tokens) }
            for f in firsts { touchBranchStart(context: ids, first: f.id) }
        }

        /// Whether token `t` after node `x` ends x's phrase instead of continuing it.
        @inline(__always) func stops(_ t: Int32, after x: SuggestNode) -> Bool {
            let tr = traits[Int(t)]
            return tr.special || tr.hasNewline || (o.maxWords > 0 && tr.startsWithSpace && Int(x.words) >= o.maxWords)
        }

        /// Node x's child by token `t`, of log-probability `lp`, in phrase mode.
        func child(_ x: SuggestNode, _ xi: Int32, _ entry: Int32, _ t: Int32, _ lp: Double) -> SuggestNode {
            let tr = traits[Int(t)]
            let continues = x.inWord && !tr.startsWithSpace
            let depth = x.depth + 1
            return SuggestNode(parent: xi, token: t, memoParent: entry, logprob: lp, depth: depth,
                               words: x.words + Int32(tr.runs) - (continues && tr.runs > 0 ? 1 : 0),
                               inWord: !tr.endsWithSpace, hasText: true,
                               complete: depth >= o.maxTokens || (o.stopAtSentence && tr.endsSentence))
        }

        /// One step of the rollout at node `xi`, from its row summary `entry`: the node the
        /// rollout goes on with, or −1 when it has ended. With `commit` the step is taken:
        /// a suggestion that ends here is a result and the runners-up are queued; without,
        /// it is only looked ahead (to find the rows the next rollouts will need).
        func rollout(_ xi: Int32, _ entry: Int32, commit: Bool) -> Int32 {
            let x = s.nodes[Int(xi)]
            let e = suggestMemo.entries[Int(entry)]
            let start = Int(e.start), end = start + Int(e.count)
            var next: Int32 = -1
            if word {
                // The word ends here with the probability that the next token does not
                // continue it: a word suggestion is that word, not every word it begins.
                let endLogprob = x.logprob + e.endLogprob
                let best = x.depth < o.maxTokens ? (start..<end).first { traits[Int(suggestMemo.tokens[$0])].continuesWord } : nil
                let ends = x.hasText && (best.map { endLogprob >= x.logprob + suggestMemo.logprobs[$0] } ?? true)
                if commit && x.hasText && endLogprob >= floor {
                    var done = x
                    done.complete = true
                    done.logprob = endLogprob
                    if ends { emit(s.add(done)) } else { s.push(done) }
                }
                guard x.depth < o.maxTokens else { return -1 }
                for j in start..<end where traits[Int(suggestMemo.tokens[j])].continuesWord {
                    let lp = x.logprob + suggestMemo.logprobs[j]
                    guard lp >= floor else { break }  // best first: the rest are lower
                    let node = SuggestNode(parent: xi, token: suggestMemo.tokens[j], memoParent: entry, logprob: lp,
                                           depth: x.depth + 1, words: 1, inWord: true, hasText: true, complete: false)
                    if j == best && !ends {
                        next = s.add(node)
                        if !commit { break }
                    } else if commit {
                        s.push(node)
                    }
                }
                return next
            }
            // A phrase ends where its likeliest next token would end it (end of text, a line
            // break, a word past max_words), as greedy decoding would end it. Its
            // probability is that of its text.
            guard end > start else { return -1 }
            let ends = stops(suggestMemo.tokens[start], after: x)
            for j in start..<end {
                let t = suggestMemo.tokens[j]
                guard !stops(t, after: x) else { continue }
                let lp = x.logprob + suggestMemo.logprobs[j]
                guard lp >= floor else { break }
                if j == start {
                    next = s.add(child(x, xi, entry, t, lp))
                    if !commit { break }
                } else if commit {
                    s.push(child(x, xi, entry, t, lp))
                }
            }
            if commit && ends && x.hasText { emit(xi) }
            if next >= 0 && s.nodes[Int(next)].complete {
                if commit { emit(next) }
                return -1
            }
            return next
        }

        /// Adds node `i` to the results unless its text is empty or already there.
        func emit(_ i: Int32) {
            s.loadPath(i)
            var bytes: [UInt8] = []
            for (j, t) in s.path.enumerated() {
                bytes += j == 0 ? Array(tokenBytes[Int(t)].dropFirst(heal.count)) : tokenBytes[Int(t)]
            }
            if !word, let nl = bytes.firstIndex(of: 0x0A) { bytes.removeSubrange(nl...) }
            let text = validUTF8Prefix(bytes)
            let key = suggestionKey(text)
            guard !key.isEmpty else { return }
            let found = Suggestion(text: text, logprob: s.nodes[Int(i)].logprob, tokens: s.path)
            // Kept best first; of two equal ones the more probable (rollouts do not finish in
            // order of probability).
            if let j = keys.firstIndex(of: key) {
                guard found.logprob > results[j].logprob else { return }
                results.remove(at: j)
                keys.remove(at: j)
            }
            var pos = results.count
            while pos > 0 && found.logprob > results[pos - 1].logprob { pos -= 1 }
            results.insert(found, at: pos)
            keys.insert(key, at: pos)
        }

        /// What an alternative must beat to be rolled out once n suggestions are found: ten
        /// times the n-th best one's probability. A rollout keeps a tenth or less of its
        /// start's probability past a token or two, so one from below that would rarely
        /// finish above the n-th; looking anyway (an exact best-first search) took twice the
        /// passes on typed sentences for the same suggestions.
        func nthBest() -> Double { results.count < o.n ? floor : max(floor, results[o.n - 1].logprob + log(10)) }

        /// The memo entry of node `i`'s row, if computed (remembered in the node).
        func entry(_ i: Int32) -> Int32? {
            if s.nodes[Int(i)].memo >= 0 { return s.nodes[Int(i)].memo }
            guard let e = suggestMemo.lookup(parent: s.nodes[Int(i)].memoParent, token: s.nodes[Int(i)].token) else { return nil }
            s.nodes[Int(i)].memo = e
            return e
        }

        var current: Int32 = -1  // the node the current rollout has reached
        search: while true {
            if let r = interruption(job) { return .ended(r, nil) }
            // The search, as far as the rows it needs are known. Once n suggestions are
            // found it goes on while an alternative is much more probable than the n-th
            // (`nthBest`): its suggestion could still replace that one.
            while true {
                if current < 0 {
                    guard let top = s.heap.first, s.nodes[Int(top)].logprob >= floor,
                          results.count < o.n || s.nodes[Int(top)].logprob > nthBest() else { break search }
                    s.pop()
                    if s.nodes[Int(top)].complete {
                        emit(top)
                        continue
                    }
                    current = top
                } else if results.count >= o.n && s.nodes[Int(current)].logprob <= nthBest() {
                    current = -1  // this rollout can no longer beat the n-th
                    continue
                }
                guard steps < maxSteps else {
                    trace.pruned += s.heap.count
                    break search
                }
                guard let e = entry(current) else { break }
                if suggestMemo.entries[Int(e)].search != suggestMemo.search { trace.replayed += 1 }
                steps += 1
                current = rollout(current, e, commit: true)
            }
            trace.mark(.scoring)

            // The rows to compute: the current rollout's next step and, speculatively, the
            // next steps of the rollouts that follow it in the queue, looked ahead through
            // the memo, while they could still be needed: until n + 2 suggestions are in
            // sight (as n + 2 greedy branches would give), then while they could beat the
            // n-th found.
            s.selected.removeAll(keepingCapacity: true)
            s.selected.append(current)
            var inSight = results.count + 1
            let bar = nthBest()
            s.sortQueue()
            for i in s.order {
                let lp = s.nodes[Int(i)].logprob
                guard s.selected.count < rowsPerPass && lp >= floor && (inSight < o.n + 2 || lp > bar) else { break }
                inSight += 1
                if s.nodes[Int(i)].complete { continue }
                var y = i
                while y >= 0 {
                    guard let e = entry(y) else {
                        s.selected.append(y)
                        break
                    }
                    y = rollout(y, e, commit: false)
                }
            }
            batch.clear()
            rows.removeAll(keepingCapacity: true)
            for i in s.selected {
                s.loadPath(i)
                s.target.removeAll(keepingCapacity: true)
                s.target.append(contentsOf: ids)
                s.target.append(contentsOf: s.path)
                let count = s.target.count
                // A cache for the row: a free slot on the same first token, else an idle
                // pooled or new cache while the search holds fewer than it reserved for.
                var slot = -1, holds = 0
                for (j, sl) in slots.enumerated() where !sl.busy {
                    let n = sharedPrefix(sl.tokens, s.target)
                    if slot < 0 || n > holds { (slot, holds) = (j, n) }
                }
                if (slot < 0 || holds <= ids.count) && slots.count < rowsPerPass,
                   let (cache, n) = branchCache(for: s.target, contextCount: ids.count, capacity: ids.count + o.maxTokens,
                                                base: base, keeping: firstIDs) {
                    var tokens = s.target
                    tokens.reserveCapacity(ids.count + o.maxTokens)
                    tokens.removeLast(count - min(n, cache.count))
                    cache.truncate(to: tokens.count)
                    slots.append(BranchSlot(cache: cache, tokens: tokens, valid: tokens.count))
                    (slot, holds) = (slots.count - 1, tokens.count)
                }
                guard slot >= 0 else { continue }  // no memory: left for a later pass
                // Positions the slot lacks are copied from whichever cache holds most of the
                // path (the context's, a sibling's or the parent's branch); the rest, at least
                // the last token, are fed.
                let have = min(holds, count - 1)
                var donor: KVCache = base, donated = min(ids.count, count - 1)
                for (j, sl) in slots.enumerated() where j != slot {
                    let n = min(sharedPrefix(sl.tokens, s.target), sl.valid, count - 1)
                    if n > donated { (donor, donated) = (sl.cache, n) }
                }
                for p in branchPool {
                    let n = min(sharedPrefix(p.tokens, s.target), p.cache.count, count - 1)
                    if n > donated { (donor, donated) = (p.cache, n) }
                }
                let from = max(have, donated)
                guard batch.count + count - from <= batch.capacity else { continue }
                let cache = slots[slot].cache
                if donated > have { cache.copy(from: donor, positions: have..<donated) } else { cache.truncate(to: have) }
                for j in from..<count {
                    batch.add(s.target[j], position: j, cache: cache, logits: j == count - 1)
                }
                slots[slot].tokens.removeAll(keepingCapacity: true)
                slots[slot].tokens.append(contentsOf: s.target)
                slots[slot].valid = from
                slots[slot].busy = true
                rows.append((i, slot))
            }
            trace.mark(.branchSetup)
            if rows.first?.node != current {
                // The current rollout's step found no memory: the rollout is dropped, as a
                // missing branch (the rows found for others are still computed).
                current = -1
                trace.pruned += 1
                if rows.isEmpty { continue }
            }
            do { try runner.forward(batch) } catch {
                // Claim no KV this pass may have left unwritten (the caches are kept).
                for (_, j) in rows {
                    slots[j].tokens.removeLast(slots[j].tokens.count - slots[j].valid)
                    slots[j].cache.truncate(to: slots[j].valid)
                    slots[j].busy = false
                }
                batch.clear()
                return .ended(.error, "\(error)")
            }
            trace.passes += 1
            trace.rows += rows.count
            trace.mark(.forward)
            wordEndMask.withUnsafeBufferPointer { mask in
                topIDs.withUnsafeMutableBufferPointer { topIDs in
                    topValues.withUnsafeMutableBufferPointer { topValues in
                        for (row, (i, j)) in rows.enumerated() {
                            let l = UnsafeBufferPointer(runner.logits(row: row))
                            let (lse, end) = LogitStats.expansion(l, mask: mask.baseAddress!, topIDs: topIDs, topValues: topValues)
                            let node = s.nodes[Int(i)]
                            s.nodes[Int(i)].memo = suggestMemo.record(parent: node.memoParent, token: node.token, topIDs: topIDs,
                                                                      topValues: topValues, lse: lse, endLogprob: end - lse)
                            if node.depth == 1 { keepBranchStartLogits(ids + [node.token], l) }
                            slots[j].valid = slots[j].tokens.count
                            slots[j].busy = false
                        }
                    }
                }
            }
            batch.clear()
            trace.mark(.scoring)
        }
        trace.expanded = steps
        defer { trace.mark(.finish) }
        if results.count > o.n { results.removeLast(results.count - o.n) }
        return .suggest(SuggestResult(suggestions: results, promptTokens: ids.count + healedTokens,
                                      reusedTokens: reused, healed: heal.count > untyped, healedTokens: healedTokens,
                                      forwardPasses: trace.passes, replayedSteps: trace.replayed,
                                      ms: (monotonicSeconds() - t0) * 1000))
    }
}

