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
// queue as an alternative. Rollouts go on, best alternative first, until n + 2 distinct
// suggestions are finished (or n, when no alternative is ten times as probable as the n-th)
// or no alternative is above the probability floor; the n most probable are returned, best
// first. (Word mode, whose suggestions are a token or three,
// searches exactly: every node taken from the queue is expanded, and the first n words
// finished are the n most probable.) So the search
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
//
// Beside it: the typed text, token traits and healing (SuggestText.swift), the search's
// nodes, queue and working arrays (SuggestScratch.swift), and what is kept between
// keystrokes (SuggestCaches.swift, SuggestMemo.swift).

extension Engine {
    /// Which rows' full logits are kept (`keepBranchStartLogits`): those after which the
    /// word the path ends in is at least this probable to end (the next token does not
    /// continue it), at any depth. The user who types the path's words and a space makes it
    /// the next keystroke's context, and with its logits kept (and the branch's KV pooled)
    /// that keystroke starts without a pass. At any depth because a search re-rooted on a
    /// typed word (`SuggestMemo.begin`) replays its rollouts' deeper rows as first ones:
    /// keeping only first tokens' rows cost a one-token prefill pass at 3 of the 5 word
    /// starts of scripts/bench-keystroke's sentence. A row inside a word (` he|ating`) is
    /// never a context at a word start, so it is not copied.
    static let keptStartWordEnd = log(0.1)

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
        // What `base` holds: the context, and after a word start taken from a branch the
        // path that branch went on with (a donor for the branches that replay it).
        var baseTokens = ids
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
            baseTokens = start.tokens
            reused = ids.count
            first = start.logits
            ownsBase = true
            trace.startKind = 1
            lock.withLock {
                shared.stats.prefixCacheHits += 1
                shared.stats.prefixCacheReusedTokens += ids.count
            }
        } else {
            if trace.enabled {
                trace.startKind = 2 + (suggestCaches.hasStart(ids) ? 4 : 0)
                    + (suggestCaches.branches.contains { $0.tokens.starts(with: ids) } ? 8 : 0)
            }
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
        var s = suggestCaches.scratch
        suggestCaches.scratch = SuggestScratch()
        // The row buffers are held apart from `s`, which the local functions below capture:
        // writing them while `s.nodes` is updated would be two accesses to one variable.
        var topIDs: [Int32] = [], topValues: [Float] = []
        swap(&topIDs, &s.topIDs)
        swap(&topValues, &s.topValues)
        defer {
            swap(&topIDs, &s.topIDs)
            swap(&topValues, &s.topValues)
            suggestCaches.scratch = s
        }
        s.clear()

        let word = o.mode == .word
        let floor = o.minProb > 0 ? log(o.minProb) : -Double.infinity
        let traits = tokenTraits
        // Steps the search may take: 2(n + 2) full rollouts, twice the rows n + 2 greedy
        // branches would take. It bounds the work when rollouts keep finding suggestions
        // already found (`tomorrow.` and `tomorrow."` are one).
        let maxSteps = 2 * (o.n + 2) * o.maxTokens
        // Rows per pass: as many branches as the admission check reserved KV for, and no more
        // than one sweep of the weights serves (`Runner.rowsPerSweep`): the speculative rows
        // are the ones a search may never read, and a row past the sweep costs most. Measured
        // (x86-avx2, 2 threads): passes of 1/2/3/4/5 rows took 3.3/4.4/6.3/6.1-7.2/8.9 ms; at
        // n = 3 four rows instead of five took scripts/bench-keystroke's warm p95 from 28.0 to
        // 22.7 ms (medians of 12 runs), though the sentence takes 33 passes instead of 29
        // (108 tokens instead of 107; SuggestKeystrokeTests).
        // Which rows a pass computes never changes a suggestion.
        let rowsPerPass = min(o.n + 2, runner.maxLogits, suggestRowsPerPassLimit ?? runner.rowsPerSweep ?? Int.max)
        suggestCaches.memo.begin(context: ids, room: maxSteps + rowsPerPass)

        var firsts: [(id: Int32, logit: Float)] = []
        firsts.reserveCapacity(SuggestMemo.width + 1)
        let logZ = first.withUnsafeBufferPointer { firstTokens($0, heal: heal, into: &firsts) }
        for (id, logit) in firsts {
            let lp = Double(logit) - logZ
            guard lp >= floor else { break }  // best first: the rest are lower
            var rest = tokenBytes[Int(id)].dropFirst(heal.count)
            var node = SuggestNode(parent: -1, token: id, memoParent: suggestCaches.memo.root, logprob: lp, depth: 1,
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

        // Phrases: n + 2 rollouts (two more, as n + 2 greedy branches were: their rows
        // are computed in the same passes), of which the n most probable are returned.
        // Words: the search is exact, the first n are the best.
        let wanted = word ? o.n : o.n + 2
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
            for f in firsts { touchBranchStart(context: ids, path: CollectionOfOne(f.id)) }
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
        /// rollout goes on with, or −1 when it has ended. The runners-up are queued, and a
        /// suggestion that ends here is a result (while looking ahead, only the queue copy
        /// changes and nothing is a result).
        func rollout(_ xi: Int32, _ entry: Int32) -> Int32 {
            let commit = !s.lookingAhead
            let x = s.nodes[Int(xi)]
            let e = suggestCaches.memo.entries[Int(entry)]
            let start = Int(e.start), end = start + Int(e.count)
            var next: Int32 = -1
            if word {
                // Words are a token or three: their search is exact best-first (no rollout).
                // x is queued as a finished word with the probability that the next token
                // does not continue it (a word suggestion is that word, not every word it
                // begins), and its continuations as alternatives; taken best first, the
                // first n words finished are the n most probable.
                let endLogprob = x.logprob + e.endLogprob
                if x.hasText && endLogprob >= floor {
                    var done = x
                    done.complete = true
                    done.logprob = endLogprob
                    s.push(done)
                }
                guard x.depth < o.maxTokens else { return -1 }
                for j in start..<end where traits[Int(suggestCaches.memo.tokens[j])].continuesWord {
                    let lp = x.logprob + suggestCaches.memo.logprobs[j]
                    guard lp >= floor else { break }  // best first: the rest are lower
                    s.push(SuggestNode(parent: xi, token: suggestCaches.memo.tokens[j], memoParent: entry, logprob: lp,
                                       depth: x.depth + 1, words: 1, inWord: true, hasText: true, complete: false))
                }
                return -1
            }
            // A phrase ends where its likeliest next token would end it (end of text, a line
            // break, a word past max_words), as greedy decoding would end it. Its
            // probability is that of its text.
            guard end > start else { return -1 }
            let ends = stops(suggestCaches.memo.tokens[start], after: x)
            for j in start..<end {
                let t = suggestCaches.memo.tokens[j]
                guard !stops(t, after: x) else { continue }
                let lp = x.logprob + suggestCaches.memo.logprobs[j]
                guard lp >= floor else { break }
                if j == start { next = s.add(child(x, xi, entry, t, lp)) } else { s.push(child(x, xi, entry, t, lp)) }
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

        /// The memo entry of node `i`'s row, if computed (remembered in the node).
        func entry(_ i: Int32) -> Int32? {
            if s.nodes[Int(i)].memo >= 0 { return s.nodes[Int(i)].memo }
            guard let e = suggestCaches.memo.lookup(parent: s.nodes[Int(i)].memoParent, token: s.nodes[Int(i)].token) else { return nil }
            s.nodes[Int(i)].memo = e
            return e
        }

        /// What an alternative's start must beat to be rolled out once n suggestions are
        /// found: ten times the n-th best one's probability (−∞ before n). A rollout keeps
        /// a tenth of its start's probability or less after a token or two, so from below
        /// that it would rarely finish above the n-th; trying them anyway (the bar without
        /// the factor) took ~15% more passes over scripts/bench-keystroke's sentence for the
        /// same suggestions.
        func mustBeat() -> Double { results.count < o.n ? -.infinity : results[o.n - 1].logprob + log(10) }

        var current: Int32 = -1  // the node the current rollout has reached
        search: while true {
            if let r = interruption(job) { return .ended(r, nil) }
            // The search, as far as the rows it needs are known. It stops at `wanted`
            // suggestions, or earlier once n are found and no alternative is likely to beat
            // the n-th (`mustBeat`; a suggestion is never more probable than where its
            // rollout started). A rollout is finished even when it falls below the n-th:
            // abandoning it costs another rollout. (Searching on to the n most probable
            // suggestions, through every alternative more probable than the n-th, doubled
            // the passes of a typed sentence's first keystrokes.)
            while results.count < wanted {
                if current < 0 {
                    guard let top = s.top, s.nodes[Int(top)].logprob >= floor,
                          s.nodes[Int(top)].logprob > mustBeat() else { break search }
                    s.pop()
                    if s.nodes[Int(top)].complete {
                        emit(top)
                        continue
                    }
                    current = top
                }
                guard steps < maxSteps else {
                    trace.pruned += s.heap.count
                    break search
                }
                guard let e = entry(current) else { break }
                if suggestCaches.memo.entries[Int(e)].search != suggestCaches.memo.search {
                    trace.replayed += 1
                    // A replayed row where a word may end, which the user may be typing:
                    // its kept logits stay among the newest, to start the next word.
                    if suggestCaches.memo.entries[Int(e)].endLogprob >= Self.keptStartWordEnd {
                        s.loadPath(current)
                        touchBranchStart(context: ids, path: s.path)
                    }
                }
                steps += 1
                current = rollout(current, e)
            }
            trace.mark(.scoring)
            guard results.count < wanted else { break }

            // The rows to compute: the current rollout's next step and, speculatively, the
            // next steps of the rollouts that will follow it. Those are found by running the
            // search ahead on a copy of the queue, through the memo (the current rollout
            // counts as one suggestion), until n + 2 suggestions are in sight (as n + 2
            // greedy branches would give, two spare for suggestions that turn out equal).
            s.selected.removeAll(keepingCapacity: true)
            s.selected.append(current)
            var inSight = results.count + 1
            let mark = s.beginLookahead()
            let bar = mustBeat()
            while s.selected.count < rowsPerPass && inSight < o.n + 2, let i = s.top {
                guard s.nodes[Int(i)].logprob >= floor && s.nodes[Int(i)].logprob > bar else { break }
                s.pop()
                inSight += 1
                var y = i
                while y >= 0 && !s.nodes[Int(y)].complete {
                    guard let e = entry(y) else {
                        s.selected.append(y)
                        break
                    }
                    y = rollout(y, e)
                }
            }
            s.lookingAhead = false  // the nodes it added stay until the pass is recorded
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
                var donor: KVCache = base, donated = min(sharedPrefix(baseTokens, s.target), base.count, count - 1)
                for (j, sl) in slots.enumerated() where j != slot {
                    let n = min(sharedPrefix(sl.tokens, s.target), sl.valid, count - 1)
                    if n > donated { (donor, donated) = (sl.cache, n) }
                }
                for p in suggestCaches.branches {
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
                if rows.isEmpty {
                    s.endLookahead(mark)
                    continue
                }
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
            trace.branchTokens += batch.count
            trace.mark(.forward)
            wordEndMask.withUnsafeBufferPointer { mask in
                topIDs.withUnsafeMutableBufferPointer { topIDs in
                    topValues.withUnsafeMutableBufferPointer { topValues in
                        for (row, (i, j)) in rows.enumerated() {
                            let l = UnsafeBufferPointer(runner.logits(row: row))
                            let (lse, end) = LogitStats.expansion(l, mask: mask.baseAddress!, topIDs: topIDs, topValues: topValues)
                            let node = s.nodes[Int(i)]
                            s.nodes[Int(i)].memo = suggestCaches.memo.record(parent: node.memoParent, token: node.token, topIDs: topIDs,
                                                                      topValues: topValues, lse: lse, endLogprob: end - lse)
                            if end - lse >= Self.keptStartWordEnd {
                                s.loadPath(i)
                                keepBranchStartLogits(ids + s.path, l)
                            }
                            slots[j].valid = slots[j].tokens.count
                            slots[j].busy = false
                        }
                    }
                }
            }
            batch.clear()
            s.endLookahead(mark)
            trace.mark(.scoring)
        }
        trace.expanded = steps
        defer { trace.mark(.finish) }
        if results.count > o.n { results.removeLast(results.count - o.n) }
        return .suggest(SuggestResult(suggestions: results, promptTokens: ids.count + healedTokens,
                                      reusedTokens: reused, healed: heal.count > untyped, healedTokens: healedTokens,
                                      forwardPasses: trace.passes,
                                      prefixPasses: (trace.prefillTokens + batch.capacity - 1) / batch.capacity,
                                      computedTokens: trace.prefillTokens + trace.branchTokens, replayedSteps: trace.replayed,
                                      ms: (monotonicSeconds() - t0) * 1000))
    }
}

